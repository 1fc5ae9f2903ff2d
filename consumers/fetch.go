package consumers

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// fetchLoop reads one partition of an assignment and dispatches each
// message, until the assignment ends. It holds the engine's backpressure:
// it waits while the partition has too many messages not yet committed
// past, while the breaker is open, and while the hold gate is shut.
func (r *Runner) fetchLoop(ctx context.Context, ss *session, p *partition, a Assignment) {
	log := r.log.With("topic", p.topic, "partition", p.id)
	var rd PartitionReader
	for backoff := 100 * time.Millisecond; rd == nil; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if rd, err = ss.src.Reader(a); err != nil {
			log.Warn("opening partition reader failed; retrying", "err", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
		}
	}
	defer rd.Close()
	if s, ok := rd.(Settler); ok {
		p.settle = s.Settle
	}
	// Inline invocations outlive the assignment like a worker's do.
	wctx, cancel := context.WithCancel(ss.invokeCtx)
	defer cancel()
	backoff := 100 * time.Millisecond
	guard := r.newCrashGuard(ss, a)
	for {
		for p.tr.pending() >= r.opts.MaxPendingPerPartition {
			select {
			case <-p.tr.wake:
			case <-ctx.Done():
				return
			}
		}
		if !r.waitBreakerForFetch(ctx) {
			return
		}
		w := &work{p: p}
		if err := rd.Fetch(ctx, &w.msg); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("fetch failed; retrying", "err", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		// A slot is taken only once a message is in hand, so partitions
		// with nothing to read never starve the others. A message that
		// waits here was fetched but is not in flight: it is not tracked
		// and so not committed past; a revocation simply drops it.
		// A parked message waits on its delay topic until due; those
		// behind it in the partition are due later still.
		if due, ok := dueAt(&w.msg); ok && !sleepUntil(ctx, due) {
			return
		}
		w.size = int64(len(w.msg.Key) + len(w.msg.Value))
		for _, h := range w.msg.Headers {
			w.size += int64(len(h.Key) + len(h.Value))
		}
		if !r.gate.acquire(ctx, w.size) {
			return
		}
		r.received.Add(1)
		p.fetched.Store(w.msg.Offset)
		w.offset = w.msg.Offset
		w.seq = p.tr.add(w.msg.Offset)
		if _, ok := w.msg.Header(handlers.HeaderReplayOf); ok {
			r.replayed.Add(1)
		}
		restoreOriginal(&w.msg)
		// Only the handler's own topic is filtered: a replayed or parked
		// message matched once already.
		if p.topic == r.spec.Topic && !r.spec.Filter.Match(&w.msg) {
			r.finish(w, filtered)
			continue
		}
		if guard != nil && !r.guard(ctx, ss, guard, p, w) {
			continue
		}
		r.dispatch(wctx, ss, w)
		r.afterCareful(ctx, guard, p)
	}
}

func dueAt(m *handlers.Message) (time.Time, bool) {
	v, ok := m.Header(handlers.HeaderRetryDue)
	if !ok {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	return sleepCtx(ctx, d)
}

// restoreOriginal gives a message replayed from the dead-letter queue, or
// parked on a delay topic, its original coordinates, so the handler sees
// (and the CloudEvents id names) the message it failed on.
func restoreOriginal(m *handlers.Message) {
	v, ok := m.Header(handlers.HeaderOriginal)
	if !ok {
		return
	}
	if topic, p, o, ok := handlers.ParseID(string(v)); ok {
		m.Topic, m.Partition, m.Offset, m.Ref = topic, p, o, ""
		return
	}
	// A queued message's topic/ref (Message.ID).
	if i := strings.LastIndexByte(string(v), '/'); i > 0 && i < len(v)-1 {
		m.Topic, m.Ref = string(v[:i]), string(v[i+1:])
	}
}
