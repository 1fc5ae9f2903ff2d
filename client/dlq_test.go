package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/client"
)

func TestListDeadLettersQuery(t *testing.T) {
	since := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		handler   string
		filter    api.DeadLetterFilter
		wantPath  string
		wantQuery string
	}{
		{name: "zero filter sends no query", handler: "orders", wantPath: "/v1/handlers/orders/dlq"},
		{
			name:    "every field",
			handler: "orders",
			filter: api.DeadLetterFilter{
				ErrorContains: "503 & timeout",
				Since:         since,
				Until:         since.Add(90*time.Minute + 250*time.Millisecond),
				State:         api.StateDead,
				Limit:         10,
				Offset:        20,
			},
			wantPath:  "/v1/handlers/orders/dlq",
			wantQuery: "error=503+%26+timeout&limit=10&offset=20&since=2026-03-01T11%3A00%3A00Z&state=dead&until=2026-03-01T12%3A30%3A00.25Z",
		},
		{
			name:      "times are sent in UTC",
			handler:   "orders",
			filter:    api.DeadLetterFilter{Since: since.In(time.FixedZone("CET", 3600))},
			wantPath:  "/v1/handlers/orders/dlq",
			wantQuery: "since=2026-03-01T11%3A00%3A00Z",
		},
		{name: "name is escaped", handler: "we/ird", filter: api.DeadLetterFilter{Offset: 5}, wantPath: "/v1/handlers/we%2Fird/dlq", wantQuery: "offset=5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got = append(got, r.Method+" "+r.URL.EscapedPath()+" ?"+r.URL.RawQuery)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"entries":[{"id":"0-7","handler":"orders","error":"boom","attempts":5,"sourceTopic":"orders","sourcePartition":2,"sourceOffset":118,"firstFailure":"2026-03-01T11:58:00Z","lastFailure":"2026-03-01T12:00:00Z","state":"dead"}],"total":31,"next":21}`))
			}))
			defer srv.Close()

			p, err := newClient(t, srv.URL).ListDeadLetters(context.Background(), tc.handler, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := []string{"GET " + tc.wantPath + " ?" + tc.wantQuery}; !reflect.DeepEqual(got, want) {
				t.Errorf("requests:\n got %q\nwant %q", got, want)
			}
			want := api.DeadLetterPage{
				Entries: []api.DeadLetter{{
					ID: "0-7", Handler: "orders", Error: "boom", Attempts: 5,
					SourceTopic: "orders", SourcePartition: 2, SourceOffset: 118,
					FirstFailure: time.Date(2026, 3, 1, 11, 58, 0, 0, time.UTC),
					LastFailure:  time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
					State:        api.StateDead,
				}},
				Total: 31,
				Next:  21,
			}
			if !reflect.DeepEqual(p, want) {
				t.Errorf("page:\n got %+v\nwant %+v", p, want)
			}
		})
	}
}

func TestDeadLetterCalls(t *testing.T) {
	f := newFake(t, map[string]reply{
		"GET /v1/handlers/orders/dlq/0-7":     {200, `{"id":"0-7","handler":"orders","error":"boom","attempts":1,"sourceTopic":"orders","sourcePartition":0,"sourceOffset":3,"firstFailure":"2026-03-01T12:00:00Z","lastFailure":"2026-03-01T12:00:00Z","state":"dead","valueBase64":"AP8=","headers":{"a":"b"}}`},
		"POST /v1/handlers/orders/dlq/replay": {200, `{"replayed":2}`},
		"POST /v1/handlers/orders/dlq/purge":  {200, `{"discarded":7}`},
		"DELETE /v1/handlers/orders/dlq/0-7":  {200, `{"discarded":1}`},
		"GET /v1/handlers/orders/dlq/0-9":     {404, `{"error":"dead-letter entry not found: \"0-9\""}`},
	})
	c := newClient(t, f.URL)
	ctx := context.Background()

	e, err := c.GetDeadLetter(ctx, "orders", "0-7")
	if err != nil || e.ID != "0-7" || e.ValueBase64 != "AP8=" || e.Value != nil || e.Headers["a"] != "b" {
		t.Errorf("GetDeadLetter = %+v, %v", e, err)
	}
	if n, err := c.ReplayDeadLetters(ctx, "orders", api.Selection{IDs: []string{"0-7", "1-2"}}); n != 2 || err != nil {
		t.Errorf("ReplayDeadLetters = %d, %v; want 2, nil", n, err)
	}
	if n, err := c.PurgeDeadLetters(ctx, "orders", api.Selection{All: true}); n != 7 || err != nil {
		t.Errorf("PurgeDeadLetters = %d, %v; want 7, nil", n, err)
	}
	if err := c.DiscardDeadLetter(ctx, "orders", "0-7"); err != nil {
		t.Errorf("DiscardDeadLetter: %v", err)
	}
	_, err = c.GetDeadLetter(ctx, "orders", "0-9")
	if !client.IsNotFound(err) || err.Error() != `dead-letter entry not found: "0-9"` {
		t.Errorf("GetDeadLetter of an unknown id: error %v", err)
	}

	want := []request{
		{Method: "GET", Path: "/v1/handlers/orders/dlq/0-7"},
		{Method: "POST", Path: "/v1/handlers/orders/dlq/replay", Body: `{"ids":["0-7","1-2"]}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/handlers/orders/dlq/purge", Body: `{"all":true}`, ContentType: "application/json"},
		{Method: "DELETE", Path: "/v1/handlers/orders/dlq/0-7", ContentType: "application/json"},
		{Method: "GET", Path: "/v1/handlers/orders/dlq/0-9"},
	}
	if got := f.requests(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n got %+v\nwant %+v", got, want)
	}
}

func TestDeadLetterCallsRefusedWithoutRequest(t *testing.T) {
	f := newFake(t, nil)
	c := newClient(t, f.URL)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{"list without a name", func() error { _, err := c.ListDeadLetters(ctx, "", api.DeadLetterFilter{}); return err }, "the handler name is empty"},
		{"get without an id", func() error { _, err := c.GetDeadLetter(ctx, "orders", ""); return err }, "the entry id is empty"},
		{"discard without an id", func() error { return c.DiscardDeadLetter(ctx, "orders", "") }, "the entry id is empty"},
		{"replay selecting nothing", func() error { _, err := c.ReplayDeadLetters(ctx, "orders", api.Selection{}); return err },
			"replaying dead letters of orders: no entries selected (give ids, or all)"},
		{"purge selecting both", func() error {
			_, err := c.PurgeDeadLetters(ctx, "orders", api.Selection{IDs: []string{"0-1"}, All: true})
			return err
		}, "discarding dead letters of orders: select entries by id or all of them, not both"},
		{"replay without a name", func() error { _, err := c.ReplayDeadLetters(ctx, "", api.Selection{All: true}); return err },
			"replaying dead letters: the handler name is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("refused calls sent %d requests", n)
	}
}
