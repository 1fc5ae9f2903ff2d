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
// Taking and returning room are atomic adds; the mutex and the wake channel
// are only for acquirers that must wait.
type gate struct {
	inflight atomic.Int64
	bytes    atomic.Int64
	limit    atomic.Int64
	maxBytes int64
	peak     atomic.Int64 // most in flight since the last takePeak
	waiters  atomic.Int64 // acquirers about to wait or waiting

	mu   sync.Mutex
	wake chan struct{} // closed and replaced to wake the waiters
}

func newGate(limit int, maxBytes int64) *gate {
	g := &gate{maxBytes: maxBytes, wake: make(chan struct{})}
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
		// Announce the wait before checking again, so a release that
		// happens in between sees a waiter and wakes it.
		g.waiters.Add(1)
		g.mu.Lock()
		wake := g.wake
		g.mu.Unlock()
		if g.tryAcquire(n) {
			g.waiters.Add(-1)
			return true
		}
		select {
		case <-wake:
			g.waiters.Add(-1)
			if g.tryAcquire(n) {
				return true
			}
		case <-ctx.Done():
			g.waiters.Add(-1)
			return false
		}
	}
}

func (g *gate) release(n int64) {
	g.bytes.Add(-n)
	g.inflight.Add(-1)
	if g.waiters.Load() > 0 {
		g.signal()
	}
}

func (g *gate) setLimit(l int) {
	if old := g.limit.Swap(int64(l)); int64(l) > old && g.waiters.Load() > 0 {
		g.signal()
	}
}

func (g *gate) signal() {
	g.mu.Lock()
	close(g.wake)
	g.wake = make(chan struct{})
	g.mu.Unlock()
}

// state returns messages and bytes in flight and the current limit.
func (g *gate) state() (inflight int, bytes int64, limit int) {
	return int(max(g.inflight.Load(), 0)), max(g.bytes.Load(), 0), int(g.limit.Load())
}

// takePeak returns the most messages in flight since the last call.
func (g *gate) takePeak() int {
	return int(g.peak.Swap(g.inflight.Load()))
}
