package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/client"
)

// A replay of all answered 202 is followed until its job is over; the
// count is the job's, the progress is reported, and ?topic= is sent.
func TestReplayFollowsTheJob(t *testing.T) {
	var mu sync.Mutex
	var reqs []string
	polls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		reqs = append(reqs, r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		job := api.DeadLetterJob{ID: "j1", Handler: "orders", Kind: "replay", Topic: "orders-old", State: "running", Total: 1200}
		switch {
		case r.Method == "POST":
			w.WriteHeader(http.StatusAccepted)
		case strings.HasSuffix(r.URL.Path, "/jobs/j1"):
			polls++
			job.Done = min(1200, 500*polls)
			if polls == 3 {
				job.State = "succeeded"
			}
		}
		_ = json.NewEncoder(w).Encode(job)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	var seen []int
	n, err := c.ReplayDeadLetters(context.Background(), "orders", api.Selection{All: true},
		client.InTopic("orders-old"), client.PollEvery(time.Millisecond), client.WithProgress(func(j api.DeadLetterJob) { seen = append(seen, j.Done) }))
	if err != nil || n != 1200 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 1200", n, err)
	}
	if got := strings.Join(reqs, " | "); got != "POST /v1/handlers/orders/dlq/replay?topic=orders-old | GET /v1/handlers/orders/dlq/jobs/j1? | GET /v1/handlers/orders/dlq/jobs/j1? | GET /v1/handlers/orders/dlq/jobs/j1?" {
		t.Fatalf("requests: %s", got)
	}
	if len(seen) != 3 || seen[0] != 500 || seen[2] != 1200 {
		t.Fatalf("progress %v", seen)
	}
}

// A job that fails is an error naming how far it got; a 200 is the count.
func TestPurgeJobFailureAndSyncAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == "POST" && strings.Contains(r.URL.RawQuery, "sync") {
			_, _ = w.Write([]byte(`{"discarded": 3}`))
			return
		}
		if r.Method == "POST" {
			w.WriteHeader(http.StatusAccepted)
		}
		_ = json.NewEncoder(w).Encode(api.DeadLetterJob{ID: "j2", Kind: "purge", State: "failed", Done: 500, Total: 900, Error: "broker gone"})
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	n, err := c.PurgeDeadLetters(context.Background(), "orders", api.Selection{All: true}, client.PollEvery(time.Millisecond))
	if err == nil || n != 500 || !strings.Contains(err.Error(), "500 of 900") || !strings.Contains(err.Error(), "broker gone") {
		t.Fatalf("PurgeDeadLetters of a failed job = %d, %v", n, err)
	}
	n, err = c.PurgeDeadLetters(context.Background(), "orders", api.Selection{IDs: []string{"0-1"}}, client.InTopic("sync"))
	if err != nil || n != 3 {
		t.Fatalf("PurgeDeadLetters answered 200 = %d, %v", n, err)
	}
}
