package consumers_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
)

// Commits that the broker refuses (coordinator moved, rebalance in
// progress) are retried; the committed offsets reach the end and nothing is
// reported committed that was not.
func TestCommitErrorsAreRetried(t *testing.T) {
	b := testkit.Broker(t)
	f := &fixture{brokers: b.Addrs(), tc: testkit.Topics(t, b.Addrs())}
	const n = 3000
	testkit.Fill(t, f.tc, "commits", n, func(i int) []byte { return []byte("k" + strconv.Itoa(i%100)) }, func(i int) []byte { return []byte("v") })
	var mu sync.Mutex
	seen := map[string]int{}
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		mu.Lock()
		seen[m.ID()]++
		mu.Unlock()
		return nil
	})
	spec := handlers.Spec{Name: "commits", Topic: "commits", Go: &handlers.GoSpec{}, Concurrency: handlers.Fixed(32)}
	// The first eight commits of the group fail, with errors a real
	// cluster gives while its coordinator moves or the group rebalances.
	notCoord := b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: spec.Group(), Err: kerr.NotCoordinator, Count: 4})
	rebal := b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: spec.Group(), Err: kerr.RebalanceInProgress, Count: 4})
	r, stop := f.runner(t, spec, inv, consumers.Options{CommitInterval: 50 * time.Millisecond})
	testkit.Eventually(t, 60*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all %d", n)
	stop()
	if notCoord.Hits() != 4 || rebal.Hits() != 4 {
		t.Fatalf("faults answered %d and %d commits, want 4 and 4", notCoord.Hits(), rebal.Hits())
	}
	st := r.Status()
	if st.CommitErrs < 8 {
		t.Fatalf("%d commit errors recorded, want at least the 8 injected", st.CommitErrs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Fatalf("%d distinct messages delivered, want %d", len(seen), n)
	}
}

// A three-broker cluster spreads partition leaders and the group
// coordinator over brokers; moving leaders mid-stream loses nothing.
func TestMultiBrokerClusterWithLeaderMoves(t *testing.T) {
	b := testkit.Broker(t, func(c *broker.Config) { c.Brokers = 3 })
	if len(b.Addrs()) != 3 {
		t.Fatalf("%d brokers, want 3", len(b.Addrs()))
	}
	f := &fixture{brokers: b.Addrs(), tc: testkit.Topics(t, b.Addrs())}
	const n = 6000
	testkit.Fill(t, f.tc, "spread", n, func(i int) []byte { return []byte("k" + strconv.Itoa(i%200)) }, func(i int) []byte { return []byte("v") })
	var mu sync.Mutex
	seen := map[string]int{}
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		time.Sleep(100 * time.Microsecond)
		mu.Lock()
		seen[m.ID()]++
		mu.Unlock()
		return nil
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	spec := handlers.Spec{Name: "spread", Topic: "spread", Go: &handlers.GoSpec{}, Concurrency: handlers.Fixed(16)}
	_, stop := f.runner(t, spec, inv, consumers.Options{})
	testkit.Eventually(t, 30*time.Second, func() bool { return count() > 1000 }, "first deliveries")
	for p := int32(0); p < 12; p++ {
		if err := b.Cluster().MoveTopicPartition("spread", p, (b.Cluster().LeaderFor("spread", p)+1)%3); err != nil {
			t.Fatalf("moving partition %d: %v", p, err)
		}
	}
	testkit.Eventually(t, 60*time.Second, func() bool { return count() == n }, "all %d after the leaders moved", n)
	testkit.Eventually(t, 30*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n }, "commit of all")
	stop()
}
