package consumers

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerPool keeps a session's idle workers so that a busy handler reuses
// goroutines (and their grown stacks) instead of starting one per message,
// while an idle one holds none: a worker idle for workerIdle exits. Idle
// workers are kept last-in first-out, so the hottest ones are reused, each
// waiting on its own channel (no contention on a shared one), and one
// cleaner per session retires the stale ones rather than a timer per job.
type workerPool struct {
	now     atomic.Int64 // a coarse clock (Unix ns), set by the cleaner
	mu      sync.Mutex
	idle    []*workerSlot
	stopped bool
	done    chan struct{}
}

type workerSlot struct {
	ch   chan job // buffered 1; a zero job tells the worker to exit
	last int64    // when it last went idle, by the coarse clock
}

// workerIdle is how long a worker waits for more work before it exits.
const workerIdle = 2 * time.Second

func newWorkerPool() *workerPool {
	p := &workerPool{done: make(chan struct{})}
	p.now.Store(time.Now().UnixNano())
	go p.clean()
	return p
}

// get returns an idle worker, or nil when there is none.
func (p *workerPool) get() *workerSlot {
	p.mu.Lock()
	n := len(p.idle)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	w := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	p.mu.Unlock()
	return w
}

// put parks a worker that finished its job; false when the pool is closed
// and the worker should exit.
func (p *workerPool) put(w *workerSlot) bool {
	w.last = p.now.Load()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return false
	}
	p.idle = append(p.idle, w)
	p.mu.Unlock()
	return true
}

func (p *workerPool) clean() {
	t := time.NewTicker(workerIdle / 2)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			p.now.Store(now.UnixNano())
			p.mu.Lock()
			i := 0
			for i < len(p.idle) && now.UnixNano()-p.idle[i].last > int64(workerIdle) {
				i++
			}
			stale := append([]*workerSlot(nil), p.idle[:i]...)
			p.idle = append(p.idle[:0], p.idle[i:]...)
			p.mu.Unlock()
			for _, w := range stale {
				w.ch <- job{}
			}
		}
	}
}

// close retires every idle worker; busy ones exit when they finish.
func (p *workerPool) close() {
	p.mu.Lock()
	p.stopped = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	close(p.done)
	for _, w := range idle {
		w.ch <- job{}
	}
}
