package consumers_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
)

// deadLetters records what the runner dead-letters.
type deadLetters struct {
	mu  sync.Mutex
	got map[string]consumers.Failure // by message id
	n   int
}

func (d *deadLetters) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

func (d *deadLetters) DeadLetter(_ context.Context, _ string, m *handlers.Message, f consumers.Failure) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.got == nil {
		d.got = map[string]consumers.Failure{}
	}
	d.got[string(m.Value)] = f
	d.n++
	return nil
}

// hangOn is a handler that never finishes the message "poison" (it
// returns only when its invocation is cancelled, as a node that crashes
// on it never does) and records every other delivery.
type hangOn struct {
	poisonCalls atomic.Int64
	inPoison    chan struct{}
	mu          sync.Mutex
	seen        map[string]int
}

func (h *hangOn) Invoke(ctx context.Context, m *handlers.Message) error {
	if string(m.Value) == "poison" {
		h.poisonCalls.Add(1)
		select {
		case h.inPoison <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	h.mu.Lock()
	h.seen[string(m.Value)]++
	h.mu.Unlock()
	return nil
}

func (h *hangOn) distinct() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// TestCrashLoopIsDeadLetteredAfterMaxAttemptsSessions: a message in flight
// at the end of every session (here a handler that never finishes it, and
// a drain that gives up on it) is counted durably across sessions, and once
// maxAttempts sessions have ended on it, the next dead-letters it as a
// crash loop without invoking it. Everything else is delivered.
func TestCrashLoopIsDeadLetteredAfterMaxAttemptsSessions(t *testing.T) {
	f := newFixture(t)
	const n = 300
	value := func(i int) []byte {
		if i == 150 {
			return []byte("poison")
		}
		return []byte(strconv.Itoa(i))
	}
	// One key: every message in one partition, behind the poison.
	testkit.Fill(t, f.tc, "crashy", n, func(int) []byte { return []byte("k") }, value)
	spec := handlers.Spec{Name: "crashy", Topic: "crashy", Go: &handlers.GoSpec{},
		Ordering: handlers.OrderingNone, Concurrency: handlers.Fixed(4),
		Retry: &handlers.RetrySpec{MaxAttempts: 3}}
	h := &hangOn{inPoison: make(chan struct{}, 1), seen: map[string]int{}}
	dl := &deadLetters{}
	opts := consumers.Options{DeadLetter: dl, DrainTimeout: 200 * time.Millisecond, DrainGrace: 5 * time.Second}

	// Session 1 finishes everything before the poison and commits up to
	// it: the poison is in flight, but no session started at it yet.
	_, stop := f.runner(t, spec, h, opts)
	testkit.Eventually(t, 60*time.Second, func() bool {
		return h.poisonCalls.Load() == 1 && f.committed(t, spec.Group(), spec.Topic) == 150
	}, "session 1 to invoke the poison and commit up to it")
	stop()
	// Sessions 2 to 4 start at the poison, count it, and end with it
	// unfinished.
	for s := 2; s <= 4; s++ {
		_, stop := f.runner(t, spec, h, opts)
		testkit.Eventually(t, 60*time.Second, func() bool { return h.poisonCalls.Load() == int64(s) },
			"session %d to invoke the poison (invoked %d times)", s, h.poisonCalls.Load())
		stop()
	}
	// The fifth does not invoke it: it dead-letters it, and delivers the
	// rest.
	r, _ := f.runner(t, spec, h, opts)
	testkit.Eventually(t, 60*time.Second, func() bool { return h.distinct() == n-1 && dl.count() == 1 },
		"all %d other messages delivered (got %d) and the poison dead-lettered (%d dead letters)", n-1, h.distinct(), dl.count())
	testkit.Eventually(t, 30*time.Second, func() bool { return f.committed(t, spec.Group(), spec.Topic) == n },
		"commit of all %d", n)
	if got := h.poisonCalls.Load(); got != 4 {
		t.Errorf("the poison was invoked %d times, want 4 (once per session, then dead-lettered)", got)
	}
	dl.mu.Lock()
	fl, ok := dl.got["poison"]
	dl.mu.Unlock()
	var cl *consumers.CrashLoopError
	if !ok || !errors.As(fl.Err, &cl) || cl.Sessions != 3 || fl.Attempts != 3 {
		t.Fatalf("dead letter of the poison: %+v (error %v), want a crash loop after 3 sessions", fl, fl.Err)
	}
	if dl.count() != 1 {
		t.Errorf("%d dead letters, want only the poison", dl.count())
	}
	if st := r.Status(); st.DeadLettered != 1 {
		t.Errorf("status counts %d dead-lettered, want 1", st.DeadLettered)
	}
	t.Logf("poison invoked %d times in 4 sessions, then dead-lettered: %v", h.poisonCalls.Load(), fl.Err)
}

// TestInnocentNeighbourOfACrashIsNotBlamed: the message at the committed
// offset when a session ends may have been innocent (in flight beside the
// one that never finishes). The next session runs the partition one
// message at a time, so it finishes and only the guilty one is counted.
func TestInnocentNeighbourOfACrashIsNotBlamed(t *testing.T) {
	f := newFixture(t)
	const n = 40
	value := func(i int) []byte {
		if i == 5 {
			return []byte("poison")
		}
		return []byte(strconv.Itoa(i))
	}
	testkit.Fill(t, f.tc, "neighbours", n, func(int) []byte { return []byte("k") }, value)
	spec := handlers.Spec{Name: "neighbours", Topic: "neighbours", Go: &handlers.GoSpec{},
		Ordering: handlers.OrderingNone, Concurrency: handlers.Fixed(8),
		Retry: &handlers.RetrySpec{MaxAttempts: 2}}
	// Message 0 is slow: it is the committed offset while the poison hangs.
	slow := &slowFirst{hangOn: hangOn{inPoison: make(chan struct{}, 1), seen: map[string]int{}}}
	dl := &deadLetters{}
	opts := consumers.Options{DeadLetter: dl, DrainTimeout: 200 * time.Millisecond, DrainGrace: 5 * time.Second}
	// Each session ends as soon as it invokes the poison, until one
	// dead-letters it instead.
	sessions := 0
	for dl.count() == 0 {
		sessions++
		if sessions > 6 {
			t.Fatalf("no dead letter after %d sessions; the poison was invoked %d times", sessions-1, slow.poisonCalls.Load())
		}
		calls := slow.poisonCalls.Load()
		_, stop := f.runner(t, spec, slow, opts)
		// 120s: once in a full make test a session took over 60s to get
		// there (cause not found; a mark's commit retried against a group
		// still re-forming is the suspect).
		testkit.Eventually(t, 120*time.Second, func() bool { return slow.poisonCalls.Load() > calls || dl.count() > 0 },
			"session %d to invoke or dead-letter the poison", sessions)
		stop()
	}
	f.runner(t, spec, slow, opts)
	testkit.Eventually(t, 60*time.Second, func() bool { return slow.distinct() == n-1 },
		"all %d other messages delivered (got %d)", n-1, slow.distinct())
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if len(dl.got) != 1 || dl.n != 1 {
		t.Fatalf("dead letters %v: want the poison alone, once", dl.got)
	}
	// Counted from the first session that started at it: at most
	// maxAttempts sessions of its own, plus the one that reached it.
	if c := slow.poisonCalls.Load(); c > 3 {
		t.Errorf("the poison was invoked %d times, want at most 3", c)
	}
	t.Logf("poison dead-lettered in session %d after %d invocations; message 0, in flight beside it, delivered", sessions, slow.poisonCalls.Load())
	if _, ok := dl.got["poison"]; !ok {
		t.Fatalf("dead letters %v: want the poison", dl.got)
	}
}

// slowFirst is hangOn with message "0" taking a while.
type slowFirst struct{ hangOn }

func (s *slowFirst) Invoke(ctx context.Context, m *handlers.Message) error {
	if string(m.Value) == "0" {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.hangOn.Invoke(ctx, m)
}
