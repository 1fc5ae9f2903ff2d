package sluice_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testkit"
)

type batchItem struct {
	ID          string            `json:"id"`
	Key         *string           `json:"key"`
	Value       json.RawMessage   `json:"value"`
	ValueBase64 string            `json:"valueBase64"`
	Headers     map[string]string `json:"headers"`
	Attempt     int               `json:"attempt"`
}

// batchSink is an HTTP endpoint taking batches; fail decides which items
// to report as failed.
type batchSink struct {
	*httptest.Server
	mu        sync.Mutex
	calls     map[string]int // value -> deliveries
	ok        map[string]bool
	sizes     []int
	violation string
	lastSeq   map[string]int
}

func newBatchSink(t *testing.T, fail func(value string, attempt int) bool) *batchSink {
	s := &batchSink{calls: map[string]int{}, ok: map[string]bool{}, lastSeq: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var items []batchItem
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &items); err != nil {
			http.Error(w, "not a batch: "+err.Error(), 400)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sizes = append(s.sizes, len(items))
		keys := map[string]bool{}
		var failed []string
		for _, it := range items {
			var v string
			if it.ValueBase64 != "" {
				raw, _ := base64.StdEncoding.DecodeString(it.ValueBase64)
				v = string(raw)
			} else if err := json.Unmarshal(it.Value, &v); err != nil {
				v = string(it.Value)
			}
			if it.Key != nil {
				if keys[*it.Key] {
					s.violation = "two messages of key " + *it.Key + " in one batch"
				}
				keys[*it.Key] = true
				seq, _ := strconv.Atoi(strings.TrimPrefix(v, "s"))
				if last, ok := s.lastSeq[*it.Key]; ok && seq < last && strings.HasPrefix(v, "s") {
					s.violation = fmt.Sprintf("key %s: %d after %d", *it.Key, seq, last)
				}
				s.lastSeq[*it.Key] = seq
			}
			s.calls[v]++
			if fail(v, s.calls[v]) {
				failed = append(failed, it.ID)
			} else {
				s.ok[v] = true
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"failed": failed})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *batchSink) okCount() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.ok) }

func TestHTTPBatchesRetryOnlyTheReportedFailures(t *testing.T) {
	n := startNode(t)
	sink := newBatchSink(t, func(v string, attempt int) bool {
		return strings.HasPrefix(v, "flaky") && attempt == 1 || v == "poison"
	})
	n.apply(t, fmt.Sprintf(`{"name":"batcher","topic":"batched","ordering":"none","concurrency":200,"http":{"url":%q},
		"batch":{"size":50,"window":"100ms"},"breaker":{"disabled":true},
		"retry":{"maxAttempts":3,"initialBackoff":"10ms","maxBackoff":"20ms"}}`, sink.URL))
	var msgs []string
	for i := 0; i < 1000; i++ {
		v := "m" + strconv.Itoa(i)
		if i%100 == 0 {
			v = "flaky" + strconv.Itoa(i)
		}
		msgs = append(msgs, fmt.Sprintf(`{"key":"k%d","value":%q}`, i, v))
	}
	msgs = append(msgs, `{"key":"p","value":"poison"}`)
	if code, body := n.do(t, "POST", "/v1/topics/batched/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return sink.okCount() == 1000 }, "1000 handled")
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "batcher", "").Total == 1 }, "the poison dead-lettered")
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for v, c := range sink.calls {
		want := 1
		switch {
		case strings.HasPrefix(v, "flaky"):
			want = 2
		case v == "poison":
			want = 3
		}
		if c != want {
			t.Fatalf("%s delivered %d times, want %d", v, c, want)
		}
	}
	big := 0
	for _, s := range sink.sizes {
		if s > 50 {
			t.Fatalf("a batch of %d, over the size 50", s)
		}
		big = max(big, s)
	}
	if big < 10 {
		t.Fatalf("largest batch %d: messages were not batched", big)
	}
	if e := n.dlq(t, "batcher", "").Entries[0]; e.Attempts != 3 || !strings.Contains(e.Error, "reported the message failed") {
		t.Fatalf("dead letter %+v", e)
	}
	t.Logf("%d batches, largest %d", len(sink.sizes), big)
}

func TestKeyOrderedBatchesHoldOneMessagePerKey(t *testing.T) {
	n := startNode(t)
	sink := newBatchSink(t, func(string, int) bool { return false })
	n.apply(t, fmt.Sprintf(`{"name":"keyed","topic":"keyed-batches","concurrency":100,"http":{"url":%q},"batch":{"size":100,"window":"20ms"}}`, sink.URL))
	var msgs []string
	for i := 0; i < 600; i++ {
		msgs = append(msgs, fmt.Sprintf(`{"key":"k%d","value":"s%d"}`, i%6, i/6))
	}
	if code, body := n.do(t, "POST", "/v1/topics/keyed-batches/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	delivered := func() int {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		total := 0
		for _, c := range sink.calls {
			total += c
		}
		return total
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return delivered() >= 600 }, "600 deliveries")
	testkit.Eventually(t, 10*time.Second, func() bool { return n.handler(t, "keyed").Status.Lag == 0 }, "lag 0")
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.violation != "" {
		t.Fatal(sink.violation)
	}
	total := 0
	for _, c := range sink.calls {
		total += c
	}
	if total != 600 {
		t.Fatalf("%d deliveries, want 600", total)
	}
	for _, s := range sink.sizes {
		if s > 6 {
			t.Fatalf("a batch of %d with only 6 keys", s)
		}
	}
}

func TestGoBatchHandlerNamesItsFailures(t *testing.T) {
	app, err := sluice.New(sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var batches atomic.Int64
	err = app.HandleBatch(sluice.Spec{Name: "gobatch", Topic: "gob", Ordering: "none", Concurrency: sluice.Fixed(64),
		Batch: &sluice.BatchSpec{Size: 20, Window: sluice.Duration(50 * time.Millisecond)},
		Retry: &sluice.RetrySpec{MaxAttempts: 2, InitialBackoff: sluice.Duration(10 * time.Millisecond), MaxBackoff: sluice.Duration(10 * time.Millisecond)}},
		func(ctx context.Context, ms []*sluice.Message) error {
			batches.Add(1)
			be := &sluice.BatchError{}
			mu.Lock()
			defer mu.Unlock()
			for _, m := range ms {
				seen[string(m.Value)]++
				if strings.HasPrefix(string(m.Value), "bad") {
					be.Fail(m, sluice.Permanent(fmt.Errorf("cannot bill %s", m.Value)))
				}
			}
			if len(be.Failed) > 0 {
				return be
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Handle(sluice.Spec{Name: "x", Topic: "gob", Batch: &sluice.BatchSpec{Size: 2}}, func(context.Context, *sluice.Message) error { return nil }); err == nil {
		t.Fatal("Handle accepted a batch spec")
	}
	n := runNode(t, app)
	n.publishN(t, "gob", "good-", 0, 200, 200)
	n.publishN(t, "gob", "bad-", 0, 2, 2)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "gobatch", "").Total == 2 }, "2 dead letters")
	testkit.Eventually(t, 30*time.Second, func() bool { return n.handler(t, "gobatch").Status.Succeeded == 200 }, "200 handled")
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < 200; i++ {
		if c := seen["good-"+strconv.Itoa(i)]; c != 1 {
			t.Fatalf("good-%d handled %d times", i, c)
		}
	}
	if seen["bad-0"] != 1 || seen["bad-1"] != 1 {
		t.Fatalf("permanent failures retried: %d, %d", seen["bad-0"], seen["bad-1"])
	}
	if b := batches.Load(); b >= 202 {
		t.Fatalf("%d calls for 202 messages: not batched", b)
	}
}
