package consumers

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// outcome.go: how a message's processing ends, and the one function that
// records it.

// outcome is how processing a message ended.
type outcome int

const (
	// handled: the handler succeeded.
	handled outcome = iota
	// deadLettered: the message is durably in the dead-letter topic.
	deadLettered
	// parked: the message is durably on a delay topic (retry mode topics).
	parked
	// filtered: the message did not match the spec's filter and was not
	// invoked.
	filtered
	// abandoned: the assignment drained first. The message is not finished,
	// so the partition is not committed past it and its next owner
	// delivers it again.
	abandoned
)

// finish records w's outcome, whatever it was. It is called exactly once
// for every message that passed the hold gate: a final outcome lets the
// partition commit past w (and acknowledges it, on a queue that settles
// each message), abandoned does not (and gives it back); either way w's
// room in the hold gate is returned.
func (r *Runner) finish(w *work, o outcome) {
	switch o {
	case handled:
		r.succeeded.Add(1)
	case deadLettered:
		r.deadLettered.Add(1)
	case parked:
		r.parked.Add(1)
	case filtered:
		r.filtered.Add(1)
	}
	if o != abandoned {
		w.p.tr.finish(w.seq)
	}
	if w.p.settle != nil {
		w.p.settle(w.offset, o != abandoned)
	}
	r.gate.release(w.size)
}

// attempt invokes w once (alone, or in a batch) and settles the breaker's
// ticket done. It reports the outcome when the attempt ended w's
// processing (handled, or abandoned when the drain cut it short);
// otherwise final is false and err is the failure to apply the policy to.
func (r *Runner) attempt(ctx context.Context, ss *session, w *work, done func(error)) (err error, o outcome, final bool) {
	unlock := r.lockForAttempt(ctx, ss, w)
	err, o, final = r.attemptLocked(ctx, ss, w, done)
	if w.careful != nil && final && o == handled {
		// Its mark is cleared before another message may run alone: a
		// crash of that one must not be charged to this one.
		r.commitPast(ctx, ss, w)
	}
	unlock()
	return err, o, final
}

func (r *Runner) attemptLocked(ctx context.Context, ss *session, w *work, done func(error)) (err error, o outcome, final bool) {
	switch {
	case r.batch != nil:
		err = r.batch.invoke(&w.msg)
	case r.spec.OnSuccess != nil:
		ictx, outs := handlers.WithOutputs(ctx)
		if err = r.invoke(ictx, &w.msg); err == nil {
			if l := outs.Take(); len(l) > 0 {
				var drained bool
				if err, drained = r.emit(ss, w, l); drained {
					done(nil)
					return nil, abandoned, true
				}
			}
		}
	default:
		err = r.invoke(ctx, &w.msg)
	}
	switch {
	case err == nil:
		done(nil)
		return nil, handled, true
	case ctx.Err() != nil: // abandoned by the drain deadline
		done(nil)
		return err, abandoned, true
	}
	if classify(err).outage {
		done(errOutage)
	} else {
		done(nil)
	}
	r.failed.Add(1)
	return err, 0, false
}

// deadLetter writes w to the dead-letter topic, retrying until it is
// durable. Without a DeadLetterer it never gives up on the message: it
// waits the longest backoff and reports false so the attempts start over.
// It also reports false when the assignment drains first.
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
	return r.writeDurably(ss, "writing to the dead-letter topic "+r.spec.DeadLetter.Topic, func(ctx context.Context) error {
		return r.opts.DeadLetter.DeadLetter(ctx, r.spec.DeadLetter.Topic, &w.msg, f)
	})
}

// park moves w to the delay topic of stage, retrying until the write is
// durable; false when the assignment drains first.
func (r *Runner) park(ss *session, w *work, stage int, f Failure) bool {
	topic := r.spec.RetryTopics()[stage]
	due := time.Now().Add(r.spec.Retry.Delays[stage].D())
	return r.writeDurably(ss, "parking on the delay topic "+topic, func(ctx context.Context) error {
		return r.opts.Parker.Park(ctx, topic, &w.msg, stage+1, due, f)
	})
}

// writeDurably retries write, with backoff, until it succeeds (true) or
// the assignment drains (false).
func (r *Runner) writeDurably(ss *session, what string, write func(ctx context.Context) error) bool {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		ctx, cancel := context.WithTimeout(ss.invokeCtx, 30*time.Second)
		err := write(ctx)
		cancel()
		if err == nil {
			return true
		}
		r.log.Error(what+" failed; retrying", "err", err)
		select {
		case <-time.After(backoff):
		case <-ss.drainCh:
			return false
		}
	}
}
