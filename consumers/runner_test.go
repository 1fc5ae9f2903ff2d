package consumers_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

type fixture struct {
	brokers []string
	tc      *topics.Client
}

func newFixture(t *testing.T) *fixture {
	b := testkit.Broker(t)
	return &fixture{brokers: b.Addrs(), tc: testkit.Topics(t, b.Addrs())}
}

func (f *fixture) runner(t *testing.T, spec handlers.Spec, inv handlers.Invoker, opts consumers.Options) (*consumers.Runner, func()) {
	t.Helper()
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := f.tc.Ensure(context.Background(), spec.ReplayTopic(), 1, nil); err != nil {
		t.Fatal(err)
	}
	src, err := consumers.NewKafkaSource(consumers.KafkaConfig{Brokers: f.brokers, Logger: testkit.Logger(),
		SessionTimeout: 6 * time.Second}, []string{spec.Topic, spec.ReplayTopic()}, spec.Group(), consumers.FirstOffset)
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = testkit.Logger()
	if opts.CommitInterval == 0 {
		opts.CommitInterval = 100 * time.Millisecond
	}
	r := consumers.NewRunner(spec, inv, src, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("runner did not stop within 60s")
		}
	}
	t.Cleanup(stop)
	return r, stop
}

// committed sums the group's committed offsets over every partition.
func (f *fixture) committed(t *testing.T, group, topic string) int64 {
	t.Helper()
	offs, err := f.tc.CommittedOffsets(context.Background(), group, topic, 12)
	if err != nil {
		return -1 // the group has not committed yet
	}
	var sum int64
	for _, o := range offs {
		sum += o
	}
	return sum
}

// keyedValue encodes key and per-key sequence so the handler can check order.
func keyedValue(keys int) (func(int) []byte, func(int) []byte) {
	return func(i int) []byte { return []byte("k" + strconv.Itoa(i%keys)) },
		func(i int) []byte { return []byte(strconv.Itoa(i / keys)) }
}

// orderChecker records deliveries and flags concurrent runs and reorders.
type orderChecker struct {
	mu         sync.Mutex
	running    map[string]bool
	last       map[string]int
	seen       map[string]int
	violations []string
	inFlight   atomic.Int64
	maxFlight  atomic.Int64
	delivered  atomic.Int64
	group      func(m *handlers.Message) string
	delay      time.Duration
}

func newOrderChecker(group func(m *handlers.Message) string, delay time.Duration) *orderChecker {
	return &orderChecker{running: map[string]bool{}, last: map[string]int{}, seen: map[string]int{}, group: group, delay: delay}
}

func (o *orderChecker) Invoke(ctx context.Context, m *handlers.Message) error {
	n := o.inFlight.Add(1)
	defer o.inFlight.Add(-1)
	for {
		cur := o.maxFlight.Load()
		if n <= cur || o.maxFlight.CompareAndSwap(cur, n) {
			break
		}
	}
	g := o.group(m)
	seq, _ := strconv.Atoi(string(m.Value))
	o.mu.Lock()
	if g != "" && o.running[g] {
		o.violations = append(o.violations, fmt.Sprintf("%s ran twice at once", g))
	}
	if g != "" {
		o.running[g] = true
		if last, ok := o.last[g]; ok && seq <= last && string(m.Key) == g {
			o.violations = append(o.violations, fmt.Sprintf("key %s: %d after %d", g, seq, last))
		}
		o.last[g] = seq
	}
	o.seen[m.ID()]++
	o.mu.Unlock()
	if o.delay > 0 {
		time.Sleep(o.delay)
	}
	o.mu.Lock()
	o.running[g] = false
	o.mu.Unlock()
	o.delivered.Add(1)
	return nil
}

func TestKeyOrderingParallelKeysInOrder(t *testing.T) {
	f := newFixture(t)
	const n, keys = 6000, 200
	k, v := keyedValue(keys)
	testkit.Fill(t, f.tc, "orders", n, k, v)
	chk := newOrderChecker(func(m *handlers.Message) string { return string(m.Key) }, 200*time.Microsecond)
	spec := handlers.Spec{Name: "orders", Topic: "orders", Go: &handlers.GoSpec{}, Ordering: handlers.OrderingKey, Concurrency: handlers.Fixed(32)}
	_, stop := f.runner(t, spec, chk, consumers.Options{})
	testkit.Eventually(t, 60*time.Second, func() bool { return chk.delivered.Load() >= n }, "%d deliveries", n)
	testkit.Eventually(t, 10*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all %d", n)
	stop()
	if len(chk.violations) > 0 {
		t.Fatalf("%d ordering violations, first: %s", len(chk.violations), chk.violations[0])
	}
	if got := chk.delivered.Load(); got != n {
		t.Fatalf("delivered %d, want exactly %d", got, n)
	}
	if len(chk.seen) != n {
		t.Fatalf("distinct messages %d, want %d", len(chk.seen), n)
	}
	if m := chk.maxFlight.Load(); m > 32 {
		t.Fatalf("max in flight %d exceeds concurrency 32", m)
	}
	if m := chk.maxFlight.Load(); m < 13 {
		t.Fatalf("max in flight %d: keys did not run in parallel beyond the 12 partitions", m)
	}
}

func TestPartitionOrderingOneAtATimePerPartition(t *testing.T) {
	f := newFixture(t)
	const n = 2400
	testkit.Fill(t, f.tc, "ledger", n, func(i int) []byte { return []byte("k" + strconv.Itoa(i%50)) },
		func(i int) []byte { return []byte(strconv.Itoa(i)) })
	var mu sync.Mutex
	lastOff := map[int]int64{}
	running := map[int]bool{}
	var bad []string
	var delivered atomic.Int64
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		mu.Lock()
		if running[m.Partition] {
			bad = append(bad, fmt.Sprintf("partition %d ran twice at once", m.Partition))
		}
		if last, ok := lastOff[m.Partition]; ok && m.Offset != last+1 {
			bad = append(bad, fmt.Sprintf("partition %d: offset %d after %d", m.Partition, m.Offset, last))
		}
		running[m.Partition] = true
		lastOff[m.Partition] = m.Offset
		mu.Unlock()
		time.Sleep(100 * time.Microsecond)
		mu.Lock()
		running[m.Partition] = false
		mu.Unlock()
		delivered.Add(1)
		return nil
	})
	spec := handlers.Spec{Name: "ledger", Topic: "ledger", Go: &handlers.GoSpec{}, Ordering: handlers.OrderingPartition, Concurrency: handlers.Fixed(64)}
	_, stop := f.runner(t, spec, inv, consumers.Options{})
	testkit.Eventually(t, 60*time.Second, func() bool { return delivered.Load() >= n }, "%d deliveries", n)
	stop()
	if len(bad) > 0 {
		t.Fatalf("%d violations, first: %s", len(bad), bad[0])
	}
	if delivered.Load() != n {
		t.Fatalf("delivered %d, want %d", delivered.Load(), n)
	}
}

func TestNoOrderingRunsBeyondPartitionsWithinLimit(t *testing.T) {
	f := newFixture(t)
	const n = 1200
	testkit.Fill(t, f.tc, "events", n, func(i int) []byte { return []byte("same") }, func(i int) []byte { return []byte(strconv.Itoa(i)) })
	chk := newOrderChecker(func(*handlers.Message) string { return "" }, 5*time.Millisecond)
	spec := handlers.Spec{Name: "events", Topic: "events", Go: &handlers.GoSpec{}, Ordering: handlers.OrderingNone, Concurrency: handlers.Fixed(50)}
	_, stop := f.runner(t, spec, chk, consumers.Options{})
	testkit.Eventually(t, 60*time.Second, func() bool { return chk.delivered.Load() >= n }, "%d deliveries", n)
	stop()
	if m := chk.maxFlight.Load(); m > 50 || m < 20 {
		t.Fatalf("max in flight %d: want between 20 and the limit 50 (one key, one partition)", m)
	}
	if chk.delivered.Load() != n {
		t.Fatalf("delivered %d, want %d", chk.delivered.Load(), n)
	}
}

// A message that keeps failing holds its partition's commit position while
// later messages of other keys complete: only the finished prefix is
// committed, and after a restart the stuck message is delivered again.
func TestOutOfOrderCompletionCommitsOnlyPrefix(t *testing.T) {
	f := newFixture(t)
	// One partition so offsets are easy to reason about.
	if err := f.tc.Create(context.Background(), "prefix", 1, nil); err != nil {
		t.Fatal(err)
	}
	testkit.Fill(t, f.tc, "prefix", 100, func(i int) []byte { return []byte("k" + strconv.Itoa(i)) },
		func(i int) []byte { return []byte(strconv.Itoa(i)) })
	var release atomic.Bool
	var okCount atomic.Int64
	var stuckAttempts atomic.Int64
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		if m.Offset == 40 && !release.Load() {
			stuckAttempts.Add(1)
			return fmt.Errorf("not yet")
		}
		okCount.Add(1)
		return nil
	})
	spec := handlers.Spec{Name: "prefix", Topic: "prefix", Go: &handlers.GoSpec{}, Ordering: handlers.OrderingKey, Concurrency: handlers.Fixed(20),
		Retry:   &handlers.RetrySpec{MaxAttempts: 1000, InitialBackoff: handlers.Duration(20 * time.Millisecond), MaxBackoff: handlers.Duration(20 * time.Millisecond)},
		Breaker: &handlers.BreakerSpec{Disabled: true}}
	r, stop := f.runner(t, spec, inv, consumers.Options{})
	testkit.Eventually(t, 30*time.Second, func() bool { return okCount.Load() == 99 }, "the other 99 messages")
	// Let several commit intervals pass.
	testkit.Eventually(t, 5*time.Second, func() bool { return r.Status().Commits >= 1 }, "a commit")
	committed40 := func() bool { return f.committed(t, spec.Group(), spec.Topic) == 40 }
	testkit.Eventually(t, 10*time.Second, committed40, "the prefix before offset 40 committed")
	// Several commit intervals pass, and the position stays behind the
	// unfinished offset 40 however much after it has finished.
	testkit.Consistently(t, 500*time.Millisecond, committed40, "committed exactly 40 while offset 40 is unfinished")
	stop()
	// The stuck message was abandoned, not lost: a new runner gets it first.
	release.Store(true)
	before := okCount.Load()
	var redelivered atomic.Int64
	inv2 := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		redelivered.Add(1)
		return nil
	})
	_, stop2 := f.runner(t, spec, inv2, consumers.Options{})
	testkit.Eventually(t, 30*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == 100 }, "commit of 100")
	stop2()
	if redelivered.Load() != 60 {
		t.Fatalf("redelivered %d after restart, want 60 (offsets 40..99)", redelivered.Load())
	}
	if okCount.Load() != before || stuckAttempts.Load() < 2 {
		t.Fatalf("unexpected counts: ok %d->%d, stuck attempts %d", before, okCount.Load(), stuckAttempts.Load())
	}
}

func TestRebalanceHandsOverWithoutLoss(t *testing.T) {
	f := newFixture(t)
	const n = 6000
	testkit.Fill(t, f.tc, "rebal", n, func(i int) []byte { return []byte("k" + strconv.Itoa(i%300)) },
		func(i int) []byte { return []byte(strconv.Itoa(i)) })
	var mu sync.Mutex
	seen := map[string]int{}
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		time.Sleep(time.Millisecond)
		mu.Lock()
		seen[m.ID()]++
		mu.Unlock()
		return nil
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	spec := handlers.Spec{Name: "rebal", Topic: "rebal", Go: &handlers.GoSpec{}, Concurrency: handlers.Fixed(16)}
	_, stop1 := f.runner(t, spec, inv, consumers.Options{})
	testkit.Eventually(t, 30*time.Second, func() bool { return count() > 500 }, "first deliveries")
	_, stop2 := f.runner(t, spec, inv, consumers.Options{})
	testkit.Eventually(t, 30*time.Second, func() bool { return count() > 3000 }, "deliveries after the join")
	stop1()
	testkit.Eventually(t, 60*time.Second, func() bool { return count() == n }, "all %d messages", n)
	testkit.Eventually(t, 10*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all")
	stop2()
	dups := 0
	mu.Lock()
	for id, c := range seen {
		if c > 1 {
			dups += c - 1
		}
		if !strings.HasPrefix(id, "rebal/") {
			t.Fatalf("unexpected id %s", id)
		}
	}
	mu.Unlock()
	t.Logf("delivered %d distinct, %d duplicates across two rebalances", n, dups)
	if dups > 2*16*12 {
		t.Fatalf("%d duplicates: more than the in-flight bound allows", dups)
	}
}

// With a limit below the partition count, idle partitions must not hold
// the slots that busy ones need, and messages produced after the handler
// joined (on an empty topic, startFrom earliest) are all delivered.
func TestLowConcurrencyOnManyPartitionsDoesNotStarve(t *testing.T) {
	f := newFixture(t)
	if err := f.tc.Create(context.Background(), "sparse", 12, nil); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error { n.Add(1); return nil })
	spec := handlers.Spec{Name: "sparse", Topic: "sparse", Go: &handlers.GoSpec{}, Concurrency: handlers.Fixed(1)}
	r, _ := f.runner(t, spec, inv, consumers.Options{})
	testkit.Eventually(t, 10*time.Second, func() bool { return len(r.Status().Partitions) == 13 }, "assignment of 12 partitions and the replay topic's")
	testkit.Fill(t, f.tc, "sparse", 3, func(i int) []byte { return []byte(strconv.Itoa(i)) }, func(i int) []byte { return []byte("x") })
	testkit.Eventually(t, 10*time.Second, func() bool { return n.Load() == 3 }, "3 deliveries with concurrency 1")
	testkit.Eventually(t, 10*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == 3 }, "commit of 3")
}
