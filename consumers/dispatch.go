package consumers

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// dispatch runs w inline when it can (tryInline), else starts it on a
// worker or queues it behind the message it must follow.
func (r *Runner) dispatch(ctx context.Context, ss *session, w *work) {
	var key string
	switch r.spec.Ordering {
	case handlers.OrderingNone:
		if !r.tryInline(ctx, ss, w, false) {
			r.start(ss, w, "", nil)
		}
		return
	case handlers.OrderingKey:
		if len(w.msg.Key) == 0 {
			if !r.tryInline(ctx, ss, w, false) {
				r.start(ss, w, "", nil)
			}
			return
		}
		if r.tryInline(ctx, ss, w, true) {
			return
		}
		key = string(w.msg.Key)
	default:
		if r.tryInline(ctx, ss, w, true) {
			return
		}
	}
	p := w.p
	p.mu.Lock()
	if c, ok := p.chains[key]; ok {
		c.queue = append(c.queue, w)
		p.mu.Unlock()
		return
	}
	c := &chain{}
	p.chains[key] = c
	p.mu.Unlock()
	r.start(ss, w, key, c)
}

// start runs w, then the rest of its chain if any, on an idle worker of
// the session or a new one.
func (r *Runner) start(ss *session, w *work, key string, c *chain) {
	ss.invoking.Add(1)
	r.active.Add(1)
	j := job{w: w, key: key, c: c}
	if ws := ss.workers.get(); ws != nil {
		ws.ch <- j
		return
	}
	go r.worker(ss, &workerSlot{ch: make(chan job, 1)}, j)
}

// job is a message to run and, for ordered handlers, the chain it heads.
type job struct {
	w   *work
	key string
	c   *chain
}

func (r *Runner) worker(ss *session, ws *workerSlot, j job) {
	// A context per worker keeps the per-invocation timeouts from all
	// registering with (and contending on) the session's context.
	ctx, cancel := context.WithCancel(ss.invokeCtx)
	defer cancel()
	for {
		r.runChain(ctx, ss, j)
		if !ss.workers.put(ws) {
			return
		}
		if j = <-ws.ch; j.w == nil {
			return
		}
	}
}

// runChain processes j's message and then, while its chain has more, the
// next ones in order.
func (r *Runner) runChain(ctx context.Context, ss *session, j job) {
	defer ss.invoking.Done()
	defer r.active.Add(-1)
	w, c := j.w, j.c
	for {
		r.process(ctx, ss, w)
		if c == nil {
			return
		}
		p := w.p
		p.mu.Lock()
		if len(c.queue) == 0 || ss.draining.Load() {
			left := c.queue
			delete(p.chains, j.key)
			p.mu.Unlock()
			for _, a := range left {
				r.finish(a, abandoned)
			}
			return
		}
		w = c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		p.mu.Unlock()
	}
}

// inlineBelow is the recent invocation latency under which the fetch loop
// runs a message itself instead of handing it to a worker: for a handler
// that fast, the handoff would cost more than the work.
const inlineBelow = 50 * time.Microsecond

// tryInline runs w's first attempt on the fetch loop's own goroutine when
// the handler is fast and nothing must run before w (ordered: no chain of
// its key, or of its partition, is running). It reports whether w
// reached its outcome; if not, w carries the failed attempt (inlineErr) for
// process to continue on a worker, so a retrying message never holds up
// the partition.
func (r *Runner) tryInline(ctx context.Context, ss *session, w *work, ordered bool) bool {
	// A handler with outputs produces them before its message is handled:
	// too slow for the fetch loop.
	if r.batch != nil || r.limiter != nil || r.spec.OnSuccess != nil || time.Duration(r.recentNs.Load()) >= inlineBelow || r.br.tripped() || ss.draining.Load() {
		return false
	}
	if _, parked := w.msg.Header(handlers.HeaderRetryStage); parked || w.careful != nil {
		return false
	}
	if ordered {
		// The chain key: the message's key, or "" for a partition chain.
		var key []byte
		if r.spec.Ordering == handlers.OrderingKey {
			key = w.msg.Key
		}
		p := w.p
		p.mu.Lock()
		_, busy := p.chains[string(key)]
		p.mu.Unlock()
		if busy {
			return false
		}
	}
	if !r.run.tryAcquire(0) {
		return false
	}
	done, ok := r.br.allow()
	if !ok {
		r.run.release(0)
		return false
	}
	w.msg.Attempt = 1
	err, o, final := r.attempt(ctx, ss, w, done)
	r.run.release(0)
	if final {
		r.finish(w, o)
		return true
	}
	w.inlineTries, w.inlineErr = 1, err
	return false
}
