package consumers

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/sluicehq/sluice/handlers"
)

// process takes one message to its outcome and records it (finish).
func (r *Runner) process(ctx context.Context, ss *session, w *work) {
	r.finish(w, r.apply(ctx, ss, w))
}

// apply is the failure policy: it runs w until it reaches a final outcome
// (handled, or durably dead-lettered or parked), or until the assignment
// drains (abandoned).
//
// In order: while the breaker is open, wait (nothing is invoked); honour
// the rate limit; invoke with the timeout; on success, done; on a
// permanent failure, dead-letter; on an outage failure while the breaker
// is tripped, retry without charging an attempt; otherwise charge an
// attempt and, with attempts left, back off (at least Retry-After) and
// retry, else park (retry mode topics, stages left) or dead-letter.
func (r *Runner) apply(ctx context.Context, ss *session, w *work) outcome {
	// A run slot bounds the invocations; a message queued behind its key
	// holds only its place in the hold gate.
	if !r.run.acquire(ctx, 0) {
		return abandoned
	}
	defer r.run.release(0)
	retry := r.spec.Retry
	var (
		charged, delivered int
		first              time.Time
	)
	stage, prior, firstParked := retryState(&w.msg)
	if !firstParked.IsZero() {
		first = firstParked
	}
	delivered = prior + w.inlineTries
	for {
		var err error
		if w.inlineErr != nil {
			// The fetch loop's inline attempt failed; carry on from it.
			err, w.inlineErr = w.inlineErr, nil
		} else {
			if ss.draining.Load() {
				return abandoned
			}
			done, ok := r.waitBreaker(ss)
			if !ok {
				return abandoned
			}
			if r.limiter != nil {
				if err := r.limiter.Wait(ctx); err != nil {
					done(nil)
					return abandoned
				}
			}
			delivered++
			w.msg.Attempt = delivered
			var o outcome
			var final bool
			if err, o, final = r.attempt(ctx, ss, w, done); final {
				return o
			}
		}
		v := classify(err)
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		failure := Failure{Handler: r.spec.Name, Attempts: delivered, FirstFailure: first, LastFailure: now, Err: err, Status: v.status}
		if v.outage && !v.permanent && r.br.state() != gobreaker.StateClosed {
			// The downstream is down: this failure is the outage's, not
			// the message's. Wait for the breaker without charging it.
			r.retried.Add(1)
			continue
		}
		if !v.permanent {
			charged++
		}
		switch {
		case !v.permanent && charged < retry.MaxAttempts:
			r.retried.Add(1)
			wait := max(backoff(retry, charged), v.retryAfter)
			r.log.Debug("invocation failed; retrying", "topic", w.msg.Topic, "partition", w.msg.Partition,
				"offset", w.msg.Offset, "attempt", delivered, "retry_in", wait, "err", err)
			select {
			case <-time.After(wait):
			case <-ss.drainCh:
				return abandoned
			}
			continue
		case !v.permanent && retry.Mode == handlers.RetryTopics && stage < len(retry.Delays) && r.opts.Parker != nil:
			if r.park(ss, w, stage, failure) {
				return parked
			}
		default:
			reason := "attempts exhausted; dead-lettering"
			if v.permanent {
				reason = "permanent failure; dead-lettering"
			}
			r.log.Warn(reason, "topic", w.msg.Topic, "partition", w.msg.Partition,
				"offset", w.msg.Offset, "attempt", delivered, "err", err)
			if !w.failureEmitted {
				w.failureEmitted = r.emitFailure(ss, w, failure)
			}
			if w.failureEmitted && r.deadLetter(ss, w, failure) {
				return deadLettered
			}
		}
		// Not written (draining, or no dead-letter queue): start over; the
		// next round sees the drain.
		charged = 0
	}
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
	err := r.asTimeout(ctx, parent, r.invoker.Invoke(ctx, m))
	d := time.Since(start)
	r.recentNs.Store((7*r.recentNs.Load() + int64(d)) / 8)
	r.settle(m, err, d, end)
	r.adaptLimit()
	return err
}

// asTimeout turns the error of an invocation that ran out of its own time
// (not the drain's) into a TimeoutError.
func (r *Runner) asTimeout(ctx, parent context.Context, err error) error {
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && parent.Err() == nil {
		var te *handlers.TimeoutError
		if !errors.As(err, &te) || te.After == 0 {
			err = &handlers.TimeoutError{After: r.timeout}
		}
	}
	return err
}

// settle reports one message's invocation (alone or in a batch) to the
// trace hook's end, the Done hook and the adaptive limiter.
func (r *Runner) settle(m *handlers.Message, err error, d time.Duration, end func(error)) {
	if end != nil {
		end(err)
	}
	if r.opts.Hooks.Done != nil {
		r.opts.Hooks.Done(m, err, d)
	}
	if r.adapt != nil {
		r.adapt.observe(d, err == nil, err != nil && classify(err).outage)
	}
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
			if r.active.Load() == 0 {
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
