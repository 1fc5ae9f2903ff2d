package consumers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many acquirers over a small gate all get through, and never more than
// the limit at once: no lost wakeups, no overrun.
func TestGateWakesOneAtATimeAndLosesNoWakeup(t *testing.T) {
	g := newGate(4, 1<<30)
	var inside, most atomic.Int64
	var wg sync.WaitGroup
	const n = 400
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if !g.acquire(ctx, 1) {
				t.Error("an acquirer waited 30s at a gate that kept releasing")
				return
			}
			c := inside.Add(1)
			for m := most.Load(); c > m && !most.CompareAndSwap(m, c); m = most.Load() {
			}
			time.Sleep(100 * time.Microsecond)
			inside.Add(-1)
			g.release(1)
		}()
	}
	wg.Wait()
	if m := most.Load(); m > 4 {
		t.Fatalf("%d inside at once, limit 4", m)
	}
	if inf, _, _ := g.state(); inf != 0 || g.waiters.Load() != 0 {
		t.Fatalf("after all: %d in flight, %d waiters", inf, g.waiters.Load())
	}
}

// Waiters that do not fit the byte bound do not wake each other in a loop;
// when the bytes come back they get through.
func TestGateBytesBoundDoesNotSpin(t *testing.T) {
	g := newGate(10, 100)
	if !g.acquire(context.Background(), 90) {
		t.Fatal("first acquire")
	}
	var got atomic.Int64
	for i := 0; i < 2; i++ {
		go func() {
			if g.acquire(context.Background(), 50) {
				got.Add(1)
			}
		}()
	}
	// A small message passes and leaves, waking one of the big waiters,
	// which still does not fit.
	time.Sleep(20 * time.Millisecond)
	if !g.acquire(context.Background(), 5) {
		t.Fatal("small acquire")
	}
	g.release(5)
	time.Sleep(50 * time.Millisecond)
	if got.Load() != 0 {
		t.Fatalf("%d waiters of 50 bytes got in beside 90 bytes (bound 100)", got.Load())
	}
	g.release(90) // now both fit, one after the other wakes the next
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got.Load() != 2 {
		t.Fatalf("%d of 2 waiters got in after the bytes came back", got.Load())
	}
}
