package consumers

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/sluicehq/sluice/handlers"
)

// process takes one message to its final outcome: handled, or durably
// dead-lettered. It gives up (abandons) only when the assignment drains;
// an abandoned message is not committed past and so is redelivered to the
// partition's next owner.
//
// The policy, in order: while the breaker is open, wait (nothing is
// invoked); honour the rate limit; invoke with the timeout; on success,
// done; on a permanent failure, dead-letter; on an outage failure while the
// breaker is tripped, retry without charging an attempt; otherwise charge
// an attempt and, with attempts left, back off (at least Retry-After) and
// retry, else dead-letter.
func (r *Runner) process(ctx context.Context, ss *session, w *work) {
	defer r.gate.release(w.size)
	// A run slot bounds the invocations; a message queued behind its key
	// holds only its place in the hold gate.
	if !r.run.acquire(ctx, 0) {
		return
	}
	defer r.run.release(0)
	retry := r.spec.Retry
	var (
		charged, delivered int
		first              time.Time
		lastErr            error
		lastStatus         int
	)
	stage, prior, firstParked := retryState(&w.msg)
	if !firstParked.IsZero() {
		first = firstParked
	}
	delivered = prior + w.tries
	for {
		var err error
		if w.pending != nil {
			// The fetch loop's inline attempt failed; carry on from it.
			err, w.pending = w.pending, nil
		} else {
			if ss.draining.Load() {
				return
			}
			done, ok := r.waitBreaker(ss)
			if !ok {
				return
			}
			if r.limiter != nil {
				if err := r.limiter.Wait(ctx); err != nil {
					done(nil)
					return
				}
			}
			delivered++
			w.msg.Attempt = delivered
			if r.batch != nil {
				err = r.batch.invoke(&w.msg)
			} else {
				err = r.invoke(ctx, &w.msg)
			}
			if err == nil {
				done(nil)
				r.succeeded.Add(1)
				w.p.tr.finish(w.seq)
				return
			}
			if ctx.Err() != nil { // abandoned by the drain deadline
				done(nil)
				return
			}
			if classify(err).outage {
				done(errOutage)
			} else {
				done(nil)
			}
			r.failed.Add(1)
		}
		v := classify(err)
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		lastErr, lastStatus = err, v.status
		if v.permanent {
			r.log.Warn("permanent failure; dead-lettering", "topic", w.msg.Topic, "partition", w.msg.Partition,
				"offset", w.msg.Offset, "attempt", delivered, "err", err)
			if r.deadLetter(ss, w, Failure{Handler: r.spec.Name, Attempts: delivered, FirstFailure: first, LastFailure: now, Err: lastErr, Status: lastStatus}) {
				return
			}
			charged = 0
			continue
		}
		if v.outage && r.br.state() != gobreaker.StateClosed {
			// The downstream is down: this failure is the outage's, not
			// the message's. Wait for the breaker without charging it.
			r.retried.Add(1)
			continue
		}
		charged++
		if charged >= retry.MaxAttempts && retry.Mode == handlers.RetryTopics && stage < len(retry.Delays) && r.opts.Parker != nil {
			f := Failure{Handler: r.spec.Name, Attempts: delivered, FirstFailure: first, LastFailure: now, Err: lastErr, Status: lastStatus}
			if r.park(ss, w, stage, f) {
				return
			}
			charged = 0
			continue
		}
		if charged >= retry.MaxAttempts {
			r.log.Warn("attempts exhausted; dead-lettering", "topic", w.msg.Topic, "partition", w.msg.Partition,
				"offset", w.msg.Offset, "attempts", charged, "err", err)
			if r.deadLetter(ss, w, Failure{Handler: r.spec.Name, Attempts: delivered, FirstFailure: first, LastFailure: now, Err: lastErr, Status: lastStatus}) {
				return
			}
			charged = 0
			continue
		}
		r.retried.Add(1)
		wait := max(backoff(retry, charged), v.retryAfter)
		r.log.Debug("invocation failed; retrying", "topic", w.msg.Topic, "partition", w.msg.Partition,
			"offset", w.msg.Offset, "attempt", delivered, "retry_in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ss.drainCh:
			return
		}
	}
}

// inlineBelow is the recent invocation latency under which the fetch loop
// runs a message itself instead of handing it to a worker: for a handler
// that fast, the handoff would cost more than the work.
const inlineBelow = 50 * time.Microsecond

// tryInline runs w's first attempt on the fetch loop's own goroutine when
// the handler is fast and nothing must run before w (ordered: no chain of
// its key, or of its partition, is running). It reports whether w
// reached its outcome; if not, w carries the failed attempt (pending) for
// process to continue on a worker, so a retrying message never holds up
// the partition.
func (r *Runner) tryInline(ctx context.Context, ss *session, w *work, ordered bool) bool {
	if r.batch != nil || r.limiter != nil || time.Duration(r.recentNs.Load()) >= inlineBelow || r.br.tripped() || ss.draining.Load() {
		return false
	}
	if _, parked := w.msg.Header(handlers.HeaderRetryStage); parked {
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
	err := r.invoke(ctx, &w.msg)
	r.run.release(0)
	if err == nil {
		done(nil)
		r.succeeded.Add(1)
		w.p.tr.finish(w.seq)
		r.gate.release(w.size)
		return true
	}
	if ctx.Err() != nil { // abandoned: unfinished, so redelivered
		done(nil)
		r.gate.release(w.size)
		return true
	}
	if classify(err).outage {
		done(errOutage)
	} else {
		done(nil)
	}
	r.failed.Add(1)
	w.tries, w.pending = 1, err
	return false
}

// invoke runs the invoker under the per-invocation timeout.
func (r *Runner) invoke(parent context.Context, m *handlers.Message) error {
	start := time.Now()
	dctx := withLazyDeadline(parent, start.Add(r.timeout))
	defer dctx.release()
	var ctx context.Context = dctx
	var end func(error)
	if r.opts.Hooks.Invoke != nil {
		ctx, end = r.opts.Hooks.Invoke(ctx, m)
	}
	err := r.invoker.Invoke(ctx, m)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && parent.Err() == nil {
		var te *handlers.TimeoutError
		if !errors.As(err, &te) || te.After == 0 {
			err = &handlers.TimeoutError{After: r.timeout}
		}
	}
	d := time.Since(start)
	r.recentNs.Store((7*r.recentNs.Load() + int64(d)) / 8)
	if end != nil {
		end(err)
	}
	if r.opts.Hooks.Done != nil {
		r.opts.Hooks.Done(m, err, d)
	}
	if r.adapt != nil {
		r.adapt.observe(d, err != nil && classify(err).outage)
		r.adaptLimit()
	}
	return err
}

// waitBreaker blocks while the breaker is open and returns its done
// callback once an invocation may proceed; false when draining.
func (r *Runner) waitBreaker(ss *session) (func(error), bool) {
	for {
		done, ok := r.br.allow()
		if ok {
			return done, true
		}
		select {
		case <-r.br.changedCh():
		case <-time.After(100 * time.Millisecond): // open turns half-open lazily
		case <-ss.drainCh:
			return nil, false
		}
	}
}

// waitBreakerForFetch pauses fetching while the breaker is not closed. In
// half-open, the messages already in flight are the probes; only when there
// are none does fetching resume to find one.
func (r *Runner) waitBreakerForFetch(ctx context.Context) bool {
	for {
		switch r.br.state() {
		case gobreaker.StateClosed:
			return true
		case gobreaker.StateHalfOpen:
			if r.running.Load() == 0 {
				return true
			}
		}
		select {
		case <-r.br.changedCh():
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return false
		}
	}
}

// deadLetter writes w to the dead-letter topic, retrying until it is
// durable, then marks it finished and returns true. Without a DeadLetterer
// it never gives up on the message: it waits the longest backoff and
// returns false so the attempts start over. It also returns false, leaving
// w unfinished, when the assignment drains.
func (r *Runner) deadLetter(ss *session, w *work, f Failure) bool {
	if r.opts.DeadLetter == nil {
		r.log.Error("no dead-letter queue; the message will be retried", "topic", w.msg.Topic,
			"partition", w.msg.Partition, "offset", w.msg.Offset, "err", f.Err)
		select {
		case <-time.After(r.spec.Retry.MaxBackoff.D()):
		case <-ss.drainCh:
		}
		return false
	}
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		ctx, cancel := context.WithTimeout(ss.work, 30*time.Second)
		err := r.opts.DeadLetter.DeadLetter(ctx, r.spec.DeadLetter.Topic, &w.msg, f)
		cancel()
		if err == nil {
			r.deadLettered.Add(1)
			w.p.tr.finish(w.seq)
			return true
		}
		r.log.Error("writing to the dead-letter topic failed; retrying", "dlq", r.spec.DeadLetter.Topic, "err", err)
		select {
		case <-time.After(backoff):
		case <-ss.drainCh:
			return false
		}
	}
}

// park moves w to the next delay topic, retrying the write until it is
// durable, then marks it finished here; false when draining.
func (r *Runner) park(ss *session, w *work, stage int, f Failure) bool {
	topic := r.spec.RetryTopics()[stage]
	due := time.Now().Add(r.spec.Retry.Delays[stage].D())
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		ctx, cancel := context.WithTimeout(ss.work, 30*time.Second)
		err := r.opts.Parker.Park(ctx, topic, &w.msg, stage+1, due, f)
		cancel()
		if err == nil {
			r.parked.Add(1)
			w.p.tr.finish(w.seq)
			return true
		}
		r.log.Error("parking on a delay topic failed; retrying", "topic", topic, "err", err)
		select {
		case <-time.After(backoff):
		case <-ss.drainCh:
			return false
		}
	}
}

// retryState reads a parked message's stage, attempts so far and first
// failure; zeros for a message from the handler's own topic.
func retryState(m *handlers.Message) (stage, attempts int, first time.Time) {
	if v, ok := m.Header(handlers.HeaderRetryStage); ok {
		stage, _ = strconv.Atoi(string(v))
	}
	if v, ok := m.Header(handlers.HeaderRetryAttempts); ok {
		attempts, _ = strconv.Atoi(string(v))
	}
	if v, ok := m.Header(handlers.HeaderRetryFirstFailure); ok {
		first, _ = time.Parse(time.RFC3339Nano, string(v))
	}
	return stage, attempts, first
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

// restoreSource gives a message replayed from the dead-letter queue, or
// parked on a delay topic, its original coordinates, so the handler sees
// (and the CloudEvents id names) the message it failed on.
func restoreSource(m *handlers.Message) {
	v, ok := m.Header(handlers.HeaderSource)
	if !ok {
		return
	}
	parts := strings.Split(string(v), "/")
	if len(parts) < 3 {
		return
	}
	n := len(parts)
	p, err1 := strconv.Atoi(parts[n-2])
	o, err2 := strconv.ParseInt(parts[n-1], 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	m.Topic = strings.Join(parts[:n-2], "/")
	m.Partition, m.Offset = p, o
}
