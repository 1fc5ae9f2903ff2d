package consumers

import (
	"context"
	"sync"
)

// gate bounds a handler's in-flight work: at most limit messages and
// maxBytes bytes (a single message larger than maxBytes still passes when
// nothing else is in flight). The limit may change at any time (adaptive
// concurrency). Fetch loops wait here, which is the engine's backpressure:
// while the gate is shut, nothing more is fetched for the handler.
type gate struct {
	mu       sync.Mutex
	inflight int
	bytes    int64
	limit    int
	maxBytes int64
	peak     int           // most in flight since the last takePeak
	wake     chan struct{} // closed and replaced on release or a higher limit
}

func newGate(limit int, maxBytes int64) *gate {
	return &gate{limit: limit, maxBytes: maxBytes, wake: make(chan struct{})}
}

// acquire waits for room for one message of n bytes; false if ctx ends.
func (g *gate) acquire(ctx context.Context, n int64) bool {
	for {
		g.mu.Lock()
		if g.inflight < g.limit && (g.bytes+n <= g.maxBytes || g.inflight == 0) {
			g.inflight++
			g.bytes += n
			g.peak = max(g.peak, g.inflight)
			g.mu.Unlock()
			return true
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}

func (g *gate) release(n int64) {
	g.mu.Lock()
	g.inflight--
	g.bytes -= n
	close(g.wake)
	g.wake = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) setLimit(l int) {
	g.mu.Lock()
	if l > g.limit {
		close(g.wake)
		g.wake = make(chan struct{})
	}
	g.limit = l
	g.mu.Unlock()
}

// state returns messages and bytes in flight and the current limit.
func (g *gate) state() (inflight int, bytes int64, limit int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inflight, g.bytes, g.limit
}

// takePeak returns the most messages in flight since the last call.
func (g *gate) takePeak() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peak
	g.peak = g.inflight
	return p
}
