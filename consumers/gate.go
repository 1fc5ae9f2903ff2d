package consumers

import (
	"context"
	"sync"
	"sync/atomic"
)

// gate bounds a count of messages, and optionally their bytes: at most
// limit messages and maxBytes bytes (a single message larger than maxBytes
// still passes when nothing else is in flight). The limit may change at any
// time (adaptive concurrency). A Runner has two:
//   - Runner.gate bounds the fetched messages it holds (holdFactor × the
//     concurrency limit, and MaxInFlightBytes). Fetch loops wait here,
//     which is the engine's backpressure: while it is shut, nothing more is
//     fetched for the handler.
//   - Runner.run bounds the invocations running at once (the concurrency
//     limit, no byte bound).
//
// Taking and returning room are atomic adds; the mutex and the queue are
// only for acquirers that must wait. Waiters queue in arrival order and a
// release wakes one of them, not all: with hundreds of messages waiting for
// a run slot, waking every waiter on every release cost more CPU than the
// invocations (the http benchmark lost half its throughput to it).
type gate struct {
	inflight atomic.Int64
	bytes    atomic.Int64
	limit    atomic.Int64
	maxBytes int64
	peak     atomic.Int64 // most in flight since the last takePeak
	waiters  atomic.Int64 // acquirers in the queue

	mu    sync.Mutex
	queue []chan struct{} // waiters, oldest first; each channel has room for one wake
}

func newGate(limit int, maxBytes int64) *gate {
	g := &gate{maxBytes: maxBytes}
	g.limit.Store(int64(limit))
	return g
}

// tryAcquire takes room for n bytes if there is some.
func (g *gate) tryAcquire(n int64) bool {
	c := g.inflight.Add(1)
	if c > g.limit.Load() {
		g.inflight.Add(-1)
		return false
	}
	if b := g.bytes.Add(n); b > g.maxBytes && c > 1 {
		g.bytes.Add(-n)
		g.inflight.Add(-1)
		return false
	}
	for p := g.peak.Load(); c > p && !g.peak.CompareAndSwap(p, c); p = g.peak.Load() {
	}
	return true
}

// acquire waits for room for one message of n bytes; false if ctx ends.
func (g *gate) acquire(ctx context.Context, n int64) bool {
	if g.tryAcquire(n) {
		return true
	}
	for {
		// Queue before checking again, so a release that happens in
		// between sees a waiter and wakes it.
		ch := make(chan struct{}, 1)
		g.mu.Lock()
		g.queue = append(g.queue, ch)
		g.waiters.Add(1)
		g.mu.Unlock()
		if g.tryAcquire(n) {
			g.leave(ch)
			return true
		}
		select {
		case <-ch:
			if g.tryAcquire(n) {
				// A release can make room for more than one (a large
				// message's bytes, a raised limit): the wake goes on while
				// there is room, and stops where there is none.
				if g.room() && g.waiters.Load() > 0 {
					g.wakeOne()
				}
				return true
			}
			// Someone else took the room this wake was for (or there are
			// not enough bytes yet); wait for the next release. The wake
			// is not passed on: a waiter that does not fit would wake
			// another that does not fit, and so on.
		case <-ctx.Done():
			g.leave(ch)
			return false
		}
	}
}

// leave takes ch out of the queue; if a release already woke it, the wake
// goes on to the next waiter, since ch's owner does not wait any more.
func (g *gate) leave(ch chan struct{}) {
	g.mu.Lock()
	for i, c := range g.queue {
		if c == ch {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			g.waiters.Add(-1)
			g.mu.Unlock()
			return
		}
	}
	g.mu.Unlock()
	if g.room() {
		g.wakeOne()
	}
}

// room reports whether one more message of any size could pass now.
func (g *gate) room() bool {
	return g.inflight.Load() < g.limit.Load() && g.bytes.Load() < g.maxBytes
}

// release returns room for one message of n bytes and wakes one waiter.
func (g *gate) release(n int64) {
	g.bytes.Add(-n)
	g.inflight.Add(-1)
	if g.waiters.Load() > 0 {
		g.wakeOne()
	}
}

// setLimit changes the limit; a higher one wakes as many waiters as it
// makes room for.
func (g *gate) setLimit(l int) {
	old := g.limit.Swap(int64(l))
	for i := old; i < int64(l) && g.waiters.Load() > 0; i++ {
		g.wakeOne()
	}
}

// wakeOne wakes the oldest waiter, if any.
func (g *gate) wakeOne() {
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.mu.Unlock()
		return
	}
	ch := g.queue[0]
	g.queue[0] = nil
	g.queue = g.queue[1:]
	g.waiters.Add(-1)
	g.mu.Unlock()
	ch <- struct{}{}
}

// state returns messages and bytes in flight and the current limit.
func (g *gate) state() (inflight int, bytes int64, limit int) {
	return int(max(g.inflight.Load(), 0)), max(g.bytes.Load(), 0), int(g.limit.Load())
}

// takePeak returns the most messages in flight since the last call.
func (g *gate) takePeak() int {
	return int(g.peak.Swap(g.inflight.Load()))
}
