package consumers_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
)

// The downstream has a knee: up to 40 calls at once take 50ms; beyond it,
// latency grows with load (throughput stops growing at 800 a second). The
// adaptive limit must climb from its minimum to near the knee, fall when
// the downstream starts failing, and climb back after it recovers. 50ms,
// not 5: at 8,000 a second a loaded 2-core machine running the race
// detector is itself the bottleneck, and the knee would not show.
func TestAdaptiveLimitFindsTheKneeAndBacksOffOnErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a backlog for several seconds")
	}
	f := newFixture(t)
	const knee = 40
	testkit.Fill(t, f.tc, "knee", 60000, func(i int) []byte { return []byte("k" + strconv.Itoa(i%5000)) },
		func(i int) []byte { return []byte("v") })
	var inflight atomic.Int64
	var failing atomic.Bool
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		if failing.Load() {
			time.Sleep(2 * time.Millisecond)
			return errors.New("downstream unavailable")
		}
		d := 50 * time.Millisecond
		if n > knee {
			d = d * time.Duration(n) / knee
		}
		time.Sleep(d)
		return nil
	})
	spec := handlers.Spec{Name: "knee", Topic: "knee", Go: &handlers.GoSpec{}, Concurrency: handlers.Adaptive(1, 512),
		Breaker: &handlers.BreakerSpec{Disabled: true},
		Retry:   &handlers.RetrySpec{MaxAttempts: 1000, InitialBackoff: handlers.Duration(5 * time.Millisecond), MaxBackoff: handlers.Duration(20 * time.Millisecond)}}
	r, _ := f.runner(t, spec, inv, consumers.Options{})

	// Climb and settle: the limit stays near the knee, not at 512.
	testkit.Eventually(t, 20*time.Second, func() bool { return r.Status().Limit >= knee*3/4 }, "the limit to climb to the knee")
	// Startup overshoots the knee by design, then falls back; let it.
	time.Sleep(8 * time.Second)
	var sum, samples, peak int
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		l := r.Status().Limit
		sum += l
		samples++
		peak = max(peak, l)
		time.Sleep(50 * time.Millisecond)
	}
	settled := sum / samples
	t.Logf("settled at %d on average (peak %d) for a knee at %d", settled, peak, knee)
	if settled < knee/2 || settled > knee*3 {
		t.Fatalf("limit settled at %d, want near the knee %d (between %d and %d)", settled, knee, knee/2, knee*3)
	}
	// Failures cut the limit.
	failing.Store(true)
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Status().Limit <= settled/3 }, "the limit to drop below %d on errors", settled/3)
	low := r.Status().Limit
	// Recovery: the limit climbs back.
	failing.Store(false)
	testkit.Eventually(t, 20*time.Second, func() bool { return r.Status().Limit >= knee*3/4 }, "the limit to recover towards the knee")
	t.Logf("dropped to %d on errors, recovered to %d", low, r.Status().Limit)
}

// An idle handler's adaptive limit settles back at its minimum.
func TestAdaptiveLimitSettlesAtMinWhenIdle(t *testing.T) {
	f := newFixture(t)
	testkit.Fill(t, f.tc, "idle", 3000, func(i int) []byte { return []byte("k" + strconv.Itoa(i)) }, func(i int) []byte { return []byte("v") })
	var done atomic.Int64
	inv := handlers.Func(func(ctx context.Context, m *handlers.Message) error {
		time.Sleep(2 * time.Millisecond)
		done.Add(1)
		return nil
	})
	spec := handlers.Spec{Name: "idle", Topic: "idle", Go: &handlers.GoSpec{}, Concurrency: handlers.Adaptive(2, 200)}
	r, _ := f.runner(t, spec, inv, consumers.Options{})
	testkit.Eventually(t, 30*time.Second, func() bool { return done.Load() == 3000 }, "the backlog")
	testkit.Eventually(t, 30*time.Second, func() bool { return r.Status().Limit == 2 }, "the limit to settle at min 2 (now %d)", r.Status().Limit)
	if st := r.Status(); st.InFlight != 0 {
		t.Fatalf("idle handler has %d in flight", st.InFlight)
	}
}
