package consumers_test

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/internal/testkit"
)

// groupProbe runs a KafkaSource with a session function that records what
// it owns, and lets a test slow down its drain.
type groupProbe struct {
	mu        sync.Mutex
	owned     []string // partitions of the live session, nil between sessions
	sessions  int
	drain     time.Duration // how long the first session takes to drain
	commitErr error         // the first session's final commit
	committed bool
	joinErrs  []string // what the source reported while it joined
}

func (g *groupProbe) report(err error) {
	if err == nil {
		return
	}
	g.mu.Lock()
	g.joinErrs = append(g.joinErrs, err.Error())
	g.mu.Unlock()
}

func (g *groupProbe) session(s consumers.Session) {
	var owned []string
	offsets := map[string]map[int]int64{}
	for _, a := range s.Assignments() {
		owned = append(owned, a.Topic+"/"+itoa(a.Partition))
		if offsets[a.Topic] == nil {
			offsets[a.Topic] = map[int]int64{}
		}
		offsets[a.Topic][a.Partition] = 5
	}
	sort.Strings(owned)
	g.mu.Lock()
	g.owned = owned
	g.sessions++
	first := g.sessions == 1
	g.mu.Unlock()
	<-s.Context().Done()
	g.mu.Lock()
	g.owned = nil
	g.mu.Unlock()
	if first && g.drain > 0 {
		// A slow drain: in-flight work takes this long to finish, and then
		// the member commits what it did before it lets go.
		time.Sleep(g.drain)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.Commit(ctx, offsets)
		cancel()
		g.mu.Lock()
		g.commitErr, g.committed = err, true
		g.mu.Unlock()
	}
}

func (g *groupProbe) snapshot() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.owned...)
}

func itoa(i int) string { return strconv.Itoa(i) }

func startProbe(t *testing.T, brokers []string, group, topic string, session time.Duration, p *groupProbe) (stop func()) {
	t.Helper()
	src, err := consumers.NewKafkaSource(consumers.KafkaConfig{
		Brokers: brokers, Logger: testkit.Logger(), SessionTimeout: session, HeartbeatInterval: 300 * time.Millisecond,
		RebalanceTimeout: 30 * time.Second,
	}, []string{topic}, group, consumers.FirstOffset)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Consume(ctx, p.session, p.report) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Error("source did not stop within 60s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// disjointCover reports whether the probes own every one of n partitions of
// topic between them, each exactly once, and each probe at least one.
func disjointCover(topic string, n int, ps ...*groupProbe) bool {
	seen := map[string]int{}
	for _, p := range ps {
		owned := p.snapshot()
		if len(owned) == 0 {
			return false
		}
		for _, o := range owned {
			seen[o]++
		}
	}
	if len(seen) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if seen[topic+"/"+itoa(i)] != 1 {
			return false
		}
	}
	return true
}

// TestGroupReformsAroundADeadMemberWhileOthersWait reproduces the stall of
// a churning fleet, deterministically. A member stops answering without
// leaving, as a process killed mid-rebalance does: here a kafka-go
// ConsumerGroup member whose generation never ends, with a 10s session
// timeout. A newcomer joins; the survivor (3s session timeout) rejoins and
// waits for the silent member's session to expire. kafka-go's
// ConsumerGroup, which Sluice used before, stopped heartbeating while its
// JoinGroup waited, so the embedded broker expired the waiting survivor
// after 3s and never answered its join: the survivor hung for its whole
// join timeout (70s) and then came back with a fresh member id, which
// restarted the rebalance. Sluice's member heartbeats while it waits, so
// the group re-forms as soon as the silent member's session ends.
func TestGroupReformsAroundADeadMemberWhileOthersWait(t *testing.T) {
	f := newFixture(t)
	const topic, group, parts = "reform-topic", "reform-group", 6
	if err := f.tc.Ensure(context.Background(), topic, parts, nil); err != nil {
		t.Fatal(err)
	}
	survivor := &groupProbe{}
	startProbe(t, f.brokers, group, topic, 3*time.Second, survivor)
	testkit.Eventually(t, 30*time.Second, func() bool { return disjointCover(topic, parts, survivor) }, "the survivor owns every partition")

	release := testkit.SilentMember(t, f.brokers, group, topic, 10*time.Second)
	testkit.Eventually(t, 60*time.Second, func() bool {
		n := len(survivor.snapshot())
		return n > 0 && n < parts
	}, "the survivor shares the partitions with the member that will fall silent")

	// The newcomer's join starts a rebalance that the silent member never
	// answers: it stays in the group until its 10s session ends.
	start := time.Now()
	newcomer := &groupProbe{}
	startProbe(t, f.brokers, group, topic, 3*time.Second, newcomer)
	// Usually 10s; the bound also covers kfake completing the rebalance by
	// its timer (30s after the silent member's expiry) on a loaded machine.
	testkit.Eventually(t, 60*time.Second, func() bool { return disjointCover(topic, parts, survivor, newcomer) },
		"survivor and newcomer own all %d partitions once the silent member's session ends", parts)
	t.Logf("group re-formed %s after the newcomer joined (the silent member's session timeout: 10s)", time.Since(start).Round(100*time.Millisecond))
	release()
	// The survivor's join was answered, not abandoned: kafka-go's
	// ConsumerGroup timed it out here and came back as a new member.
	survivor.mu.Lock()
	defer survivor.mu.Unlock()
	if len(survivor.joinErrs) > 0 {
		t.Fatalf("the survivor's join failed while the group re-formed: %v", survivor.joinErrs)
	}
}

// TestSlowDrainKeepsTheMembershipAndCommits shows that a member draining a
// revoked assignment for longer than its session timeout is still a member
// when it commits: its final commit is accepted, so none of its finished
// work is redelivered.
func TestSlowDrainKeepsTheMembershipAndCommits(t *testing.T) {
	f := newFixture(t)
	const topic, group, parts = "drain-topic", "drain-group", 4
	if err := f.tc.Ensure(context.Background(), topic, parts, nil); err != nil {
		t.Fatal(err)
	}
	slow := &groupProbe{drain: 7 * time.Second} // over twice the session timeout
	startProbe(t, f.brokers, group, topic, 3*time.Second, slow)
	testkit.Eventually(t, 30*time.Second, func() bool { return disjointCover(topic, parts, slow) }, "the first member owns every partition")

	other := &groupProbe{}
	startProbe(t, f.brokers, group, topic, 3*time.Second, other)
	testkit.Eventually(t, 60*time.Second, func() bool {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		return slow.committed
	}, "the slow member's final commit")
	slow.mu.Lock()
	err := slow.commitErr
	slow.mu.Unlock()
	if err != nil {
		t.Fatalf("final commit after a 7s drain was rejected: %v", err)
	}
	offs, err := f.tc.CommittedOffsets(context.Background(), group, topic, parts)
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < parts; p++ {
		if offs[p] != 5 {
			t.Fatalf("partition %d committed at %d, want 5 (the slow member's final commit); all: %v", p, offs[p], offs)
		}
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return disjointCover(topic, parts, slow, other) }, "both members share the partitions")
}

// TestFencedCommitIsNotRetried shows that a commit for a generation the
// coordinator has rejected returns ErrFenced at once.
func TestFencedCommitIsNotRetried(t *testing.T) {
	f := newFixture(t)
	const topic, group = "fenced-topic", "fenced-group"
	if err := f.tc.Ensure(context.Background(), topic, 2, nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sess consumers.Session
	got := make(chan struct{})
	src, err := consumers.NewKafkaSource(consumers.KafkaConfig{Brokers: f.brokers, Logger: testkit.Logger(),
		SessionTimeout: 3 * time.Second, HeartbeatInterval: 300 * time.Millisecond}, []string{topic}, group, consumers.FirstOffset)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = src.Consume(ctx, func(s consumers.Session) {
			mu.Lock()
			first := sess == nil
			if first {
				sess = s
			}
			mu.Unlock()
			if first {
				close(got)
			}
			<-s.Context().Done()
		}, nil)
	}()
	defer func() { cancel(); <-done }()
	<-got
	// Another member joins, so the first generation ends and a new one
	// forms; the old session's commits are then for a stale generation.
	other := &groupProbe{}
	startProbe(t, f.brokers, group, topic, 3*time.Second, other)
	testkit.Eventually(t, 30*time.Second, func() bool { return len(other.snapshot()) > 0 }, "the second member's assignment")
	start := time.Now()
	err = sess.Commit(context.Background(), map[string]map[int]int64{topic: {0: 1}})
	if !errors.Is(err, consumers.ErrFenced) {
		t.Fatalf("commit for an ended generation: got %v, want ErrFenced", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a fenced commit took %s: it must not be retried", d)
	}
}
