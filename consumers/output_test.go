package consumers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/dlq"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

// readAll reads every record of topic.
func (f *fixture) readAll(t *testing.T, topic string) []topics.Message {
	t.Helper()
	ctx := context.Background()
	n, err := f.tc.Partitions(ctx, topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	offs, err := f.tc.Offsets(ctx, topic, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []topics.Message
	for p, r := range offs {
		if err := f.tc.Read(ctx, topic, p, r.Start, r.End, func(m topics.Message) bool { out = append(out, m); return true }); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func header(hs []kafka.Header, k string) (string, bool) {
	for _, h := range hs {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

// An HTTP handler with onSuccess: each 2xx response with a body is
// produced to the output topic exactly once, with the input's key (or the
// Sluice-Key override), the ce-type, ce-subject and content-type response
// headers, sluice-cause naming the input and the input's trace context; a
// 204 and an empty 200 produce nothing. Every input is committed.
func TestOnSuccessHTTPResponseBecomesTheOutput(t *testing.T) {
	f := newFixture(t)
	const n = 400
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	recs := make([]topics.Record, n)
	for i := range recs {
		recs[i] = topics.Record{Key: []byte("k" + strconv.Itoa(i)), Value: []byte(strconv.Itoa(i)), Partition: -1,
			Headers: []kafka.Header{{Key: "traceparent", Value: []byte(traceparent)}}}
	}
	if _, err := f.tc.Produce(context.Background(), "uploads", recs); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	ceID := map[int]string{} // input -> the ce-id it was delivered with
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, 16)
		nb, _ := r.Body.Read(body)
		i, err := strconv.Atoi(string(body[:nb]))
		if err != nil {
			http.Error(w, "bad input", http.StatusBadRequest)
			return
		}
		mu.Lock()
		if old, ok := ceID[i]; ok && old != r.Header.Get("Ce-Id") {
			t.Errorf("input %d: two ce-ids %s and %s", i, old, r.Header.Get("Ce-Id"))
		}
		ceID[i] = r.Header.Get("Ce-Id")
		mu.Unlock()
		switch i % 4 {
		case 0:
			w.WriteHeader(http.StatusNoContent)
			return
		case 1:
			w.WriteHeader(http.StatusOK) // empty body
			return
		case 3:
			w.Header().Set("Sluice-Key", "new-"+strconv.Itoa(i))
		}
		w.Header().Set("Ce-Type", "thumbnail.made")
		w.Header().Set("Ce-Subject", "s-"+strconv.Itoa(i))
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "out-%d", i)
	}))
	defer srv.Close()

	spec, err := handlers.ParseOne([]byte("name: thumbs\ntopic: uploads\nhttp: {url: " + srv.URL + "}\nconcurrency: 16\nonSuccess: {topic: thumbnails}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, stop := f.runner(t, spec, handlers.NewHTTPInvoker(spec.HTTP, 16), consumers.Options{Outputs: f.tc})
	testkit.Eventually(t, 60*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all %d", n)
	stop()

	outs := f.readAll(t, "thumbnails")
	if len(outs) != n/2 {
		t.Fatalf("%d outputs, want exactly %d", len(outs), n/2)
	}
	seen := map[int]bool{}
	mu.Lock()
	defer mu.Unlock()
	for _, o := range outs {
		i, err := strconv.Atoi(strings.TrimPrefix(string(o.Value), "out-"))
		if err != nil || i%4 == 0 || i%4 == 1 {
			t.Fatalf("unexpected output %q", o.Value)
		}
		if seen[i] {
			t.Fatalf("output of input %d produced twice", i)
		}
		seen[i] = true
		wantKey := "k" + strconv.Itoa(i)
		if i%4 == 3 {
			wantKey = "new-" + strconv.Itoa(i)
		}
		if string(o.Key) != wantKey {
			t.Errorf("input %d: key %q, want %q", i, o.Key, wantKey)
		}
		for k, want := range map[string]string{"ce_type": "thumbnail.made", "ce_subject": "s-" + strconv.Itoa(i),
			"content-type": "text/plain", handlers.HeaderCause: ceID[i], "traceparent": traceparent} {
			if got, _ := header(o.Headers, k); got != want {
				t.Errorf("input %d: header %s = %q, want %q", i, k, got, want)
			}
		}
	}
	if st := r.Status(); st.Emitted != n/2 || st.Succeeded != n || st.DeadLettered != 0 {
		t.Fatalf("emitted %d succeeded %d dead-lettered %d; want %d, %d, 0", st.Emitted, st.Succeeded, st.DeadLettered, n/2, n)
	}
}

// A Go handler emits any number of outputs with handlers.Emit; only the
// successful attempt's outputs are produced, so a message that fails once
// and then succeeds yields its outputs exactly once.
func TestOnSuccessGoEmit(t *testing.T) {
	f := newFixture(t)
	const n = 300
	testkit.Fill(t, f.tc, "orders", n, func(i int) []byte { return []byte("k" + strconv.Itoa(i%13)) }, func(i int) []byte { return []byte(strconv.Itoa(i)) })
	var mu sync.Mutex
	attempts := map[string]int{}
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		i, _ := strconv.Atoi(string(m.Value))
		mu.Lock()
		attempts[m.ID()]++
		a := attempts[m.ID()]
		mu.Unlock()
		// Every input emits i%3 outputs (0, 1 or 2).
		for j := range i % 3 {
			if err := handlers.Emit(ctx, handlers.Output{Value: []byte(fmt.Sprintf("%d.%d", i, j))}); err != nil {
				return err
			}
		}
		if i%5 == 0 && a == 1 {
			return fmt.Errorf("fails once after emitting")
		}
		return nil
	})
	spec := handlers.Spec{Name: "splitter", Topic: "orders", Go: &handlers.GoSpec{}, Concurrency: handlers.Fixed(8),
		Retry: &handlers.RetrySpec{InitialBackoff: handlers.Duration(time.Millisecond)}, OnSuccess: &handlers.OutputSpec{Topic: "lines"}}
	_, stop := f.runner(t, spec, inv, consumers.Options{Outputs: f.tc})
	testkit.Eventually(t, 60*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all %d", n)
	stop()

	want := 0
	for i := range n {
		want += i % 3
	}
	outs := f.readAll(t, "lines")
	if len(outs) != want {
		t.Fatalf("%d outputs, want exactly %d", len(outs), want)
	}
	seen := map[string]bool{}
	for _, o := range outs {
		if seen[string(o.Value)] {
			t.Fatalf("output %s produced twice", o.Value)
		}
		seen[string(o.Value)] = true
		i, _ := strconv.Atoi(strings.SplitN(string(o.Value), ".", 2)[0])
		if string(o.Key) != "k"+strconv.Itoa(i%13) {
			t.Fatalf("output %s: key %q, want the input's", o.Value, o.Key)
		}
		if c, _ := header(o.Headers, handlers.HeaderCause); !strings.HasPrefix(c, "orders/") {
			t.Fatalf("output %s: sluice-cause %q", o.Value, c)
		}
	}
}

// Emit outside a handler with onSuccess says so.
func TestEmitWithoutOnSuccess(t *testing.T) {
	if err := handlers.Emit(context.Background(), handlers.Output{Value: []byte("x")}); err != handlers.ErrNoOutputs {
		t.Fatalf("got %v, want ErrNoOutputs", err)
	}
}

// An output larger than the broker takes (the output topic's
// max.message.bytes) fails its input permanently: the input is
// dead-lettered with that reason and, with onFailure, also produced there;
// the other inputs' outputs flow, and nothing is lost.
func TestOutputTooLargeIsDeadLetteredBesideOnFailure(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.tc.Create(ctx, "small-out", 3, map[string]string{"max.message.bytes": "1024"}); err != nil {
		t.Fatal(err)
	}
	const n = 60
	testkit.Fill(t, f.tc, "in", n, func(i int) []byte { return []byte("k" + strconv.Itoa(i)) }, func(i int) []byte { return []byte(strconv.Itoa(i)) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, 16)
		nb, _ := r.Body.Read(body)
		i, _ := strconv.Atoi(string(body[:nb]))
		if i%10 == 0 {
			_, _ = w.Write([]byte(strings.Repeat("x", 4096))) // over the topic's limit
			return
		}
		fmt.Fprintf(w, "ok-%d", i)
	}))
	defer srv.Close()
	spec, err := handlers.ParseOne([]byte("name: big\ntopic: in\nhttp: {url: " + srv.URL + "}\nonSuccess: {topic: small-out}\nonFailure: {topic: in-failed}\ndeadLetter: {topic: in-dlq}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, stop := f.runner(t, spec, handlers.NewHTTPInvoker(spec.HTTP, 8), consumers.Options{Outputs: f.tc, DeadLetter: dlq.New(f.tc, f.brokers, nil, testkit.Logger())})
	testkit.Eventually(t, 60*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all %d", n)
	stop()

	if outs := f.readAll(t, "small-out"); len(outs) != n-n/10 {
		t.Fatalf("%d outputs, want exactly %d", len(outs), n-n/10)
	}
	for _, topic := range []string{"in-dlq", "in-failed"} {
		got := f.readAll(t, topic)
		if len(got) != n/10 {
			t.Fatalf("%s: %d messages, want exactly %d", topic, len(got), n/10)
		}
		for _, m := range got {
			i, _ := strconv.Atoi(string(m.Value))
			errHeader := dlq.HeaderError
			if topic == "in-failed" {
				errHeader = consumers.HeaderError
			}
			reason, _ := header(m.Headers, errHeader)
			if i%10 != 0 || string(m.Key) != "k"+strconv.Itoa(i) || !strings.Contains(reason, "larger than small-out accepts") {
				t.Fatalf("%s: message %q key %q reason %q", topic, m.Value, m.Key, reason)
			}
		}
	}
	if st := r.Status(); st.DeadLettered != n/10 || st.Emitted != n-n/10 {
		t.Fatalf("dead-lettered %d emitted %d", st.DeadLettered, st.Emitted)
	}
}
