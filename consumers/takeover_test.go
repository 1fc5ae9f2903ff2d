package consumers_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
)

// takeoverRunner runs spec with a source that takes over legacy.
func (f *fixture) takeoverRunner(t *testing.T, spec handlers.Spec, inv handlers.Invoker, legacy string) *consumers.Runner {
	t.Helper()
	spec.StartFrom = handlers.StartFromGroup(legacy)
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	src, err := consumers.NewKafkaSource(consumers.KafkaConfig{Brokers: f.brokers, Logger: testkit.Logger(), SessionTimeout: 6 * time.Second},
		[]string{spec.Topic, spec.ReplayTopic()}, spec.Group(), consumers.FirstOffset, consumers.TakeOver(legacy))
	if err != nil {
		t.Fatal(err)
	}
	r := consumers.NewRunner(spec, inv, src, consumers.Options{Logger: testkit.Logger(), CommitInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("runner did not stop within 60s")
		}
	})
	return r
}

type idCounter struct {
	mu   sync.Mutex
	seen map[string]int
}

func (c *idCounter) Invoke(_ context.Context, m *handlers.Message) error {
	c.mu.Lock()
	c.seen[m.ID()]++
	c.mu.Unlock()
	return nil
}

func (c *idCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// A hand-written kafka-go consumer group processes and commits part of a
// topic. While it runs, the handler that takes it over waits and says why;
// once it stops, the handler starts on every partition exactly where the
// group committed: every message the legacy consumer did not process is
// handled once, and none that it did is handled again.
func TestTakeoverStartsWhereTheLegacyGroupCommitted(t *testing.T) {
	f := newFixture(t)
	const n, legacyDone = 1200, 500
	testkit.Fill(t, f.tc, "orders", n, func(i int) []byte { return []byte("k" + strconv.Itoa(i%100)) }, func(i int) []byte { return []byte(strconv.Itoa(i)) })

	legacy := kafka.NewReader(kafka.ReaderConfig{Brokers: f.brokers, GroupID: "legacy-orders-consumer", Topic: "orders",
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond, CommitInterval: 0, StartOffset: kafka.FirstOffset})
	processed := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(processed) < legacyDone {
		m, err := legacy.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("legacy consumer: %v", err)
		}
		if err := legacy.CommitMessages(ctx, m); err != nil {
			t.Fatalf("legacy commit: %v", err)
		}
		processed[handlers.FormatID(m.Topic, m.Partition, m.Offset)] = true
	}

	inv := &idCounter{seen: map[string]int{}}
	spec := handlers.Spec{Name: "orders-new", Topic: "orders", Go: &handlers.GoSpec{}, Concurrency: handlers.Fixed(16)}
	r := f.takeoverRunner(t, spec, inv, "legacy-orders-consumer")
	testkit.Eventually(t, 30*time.Second, func() bool {
		return strings.Contains(r.Status().LastError, `"legacy-orders-consumer": it still has 1 active member(s)`)
	}, "the handler says the legacy group is still active")
	if c := inv.count(); c != 0 {
		t.Fatalf("%d messages handled while the legacy consumer was still running", c)
	}

	if err := legacy.Close(); err != nil { // the cut-over: stop the old service
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all %d", n)
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if len(inv.seen) != n-legacyDone {
		t.Fatalf("handled %d distinct messages, want exactly %d (the ones the legacy consumer did not commit)", len(inv.seen), n-legacyDone)
	}
	for id, c := range inv.seen {
		if processed[id] {
			t.Fatalf("%s was processed by the legacy consumer and again by the handler", id)
		}
		if c != 1 {
			t.Fatalf("%s handled %d times", id, c)
		}
	}
}

// A takeover of a group that does not exist, or that has no offsets on
// the handler's topic, reads nothing and says why.
func TestTakeoverRefusesUnknownOrUnrelatedGroup(t *testing.T) {
	f := newFixture(t)
	testkit.Fill(t, f.tc, "orders", 50, func(i int) []byte { return nil }, func(i int) []byte { return []byte("v") })
	testkit.Fill(t, f.tc, "payments", 50, func(i int) []byte { return nil }, func(i int) []byte { return []byte("v") })
	// A group that committed on payments only, and has left.
	other := kafka.NewReader(kafka.ReaderConfig{Brokers: f.brokers, GroupID: "payments-consumer", Topic: "payments", MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := other.FetchMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.CommitMessages(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, group, want string }{
		{"unknown", "no-such-consumer", `"no-such-consumer": no such group`},
		{"other topic", "payments-consumer", `"payments-consumer": it has no committed offsets on topic orders`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := &idCounter{seen: map[string]int{}}
			spec := handlers.Spec{Name: "t-" + strings.ReplaceAll(tc.name, " ", "-"), Topic: "orders", Go: &handlers.GoSpec{}}
			r := f.takeoverRunner(t, spec, inv, tc.group)
			testkit.Eventually(t, 30*time.Second, func() bool { return strings.Contains(r.Status().LastError, tc.want) },
				"the handler says %q", tc.want)
			if c := inv.count(); c != 0 {
				t.Fatalf("%d messages handled", c)
			}
			if got := f.committed(t, spec.Group(), spec.Topic); got > 0 {
				t.Fatalf("the handler's group committed %d", got)
			}
		})
	}
}
