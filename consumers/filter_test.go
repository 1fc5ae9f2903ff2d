package consumers_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
)

// A filtered handler is invoked with exactly the matching messages, once
// each; the others, including values that are not JSON, are committed
// without an invocation and counted.
func TestFilterInvokesOnlyMatchingAndCommitsTheRest(t *testing.T) {
	f := newFixture(t)
	const n = 900
	// Every third message is paid; every tenth is not JSON at all.
	matches := func(i int) bool { return i%10 != 0 && i%3 == 0 }
	value := func(i int) []byte {
		if i%10 == 0 {
			return []byte("\x00binary " + strconv.Itoa(i))
		}
		kind := "new"
		if i%3 == 0 {
			kind = "paid"
		}
		b, _ := json.Marshal(map[string]any{"n": i, "kind": kind, "total": i % 50})
		return b
	}
	testkit.Fill(t, f.tc, "orders", n, func(i int) []byte { return []byte("k" + strconv.Itoa(i%7)) }, value)
	want := 0
	for i := range n {
		if matches(i) {
			want++
		}
	}

	var mu sync.Mutex
	seen := map[int]int{}
	inv := handlers.Func(func(_ context.Context, m *handlers.Message) error {
		var v struct {
			N    int
			Kind string
		}
		if err := json.Unmarshal(m.Value, &v); err != nil || v.Kind != "paid" {
			t.Errorf("invoked with a message the filter excludes: %q", m.Value)
		}
		mu.Lock()
		seen[v.N]++
		mu.Unlock()
		return nil
	})
	spec, err := handlers.ParseOne([]byte("name: paid\ntopic: orders\ngo: {}\nconcurrency: 8\nfilter:\n  value:\n    kind: [paid]\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, stop := f.runner(t, spec, inv, consumers.Options{})
	testkit.Eventually(t, 60*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all %d", n)
	stop()

	st := r.Status()
	if st.Received != n || st.Succeeded != uint64(want) || st.Filtered != uint64(n-want) || st.Failed != 0 {
		t.Fatalf("received %d succeeded %d filtered %d failed %d; want %d, %d, %d, 0",
			st.Received, st.Succeeded, st.Filtered, st.Failed, n, want, n-want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != want {
		t.Fatalf("invoked %d distinct messages, want %d", len(seen), want)
	}
	for i, c := range seen {
		if !matches(i) || c != 1 {
			t.Fatalf("message %d invoked %d times (matches: %v)", i, c, matches(i))
		}
	}
}
