package consumers

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// output.go: output chaining (handlers/output.go). The invariant: an
// input counts as handled only once every output of its successful attempt
// is durably on the onSuccess topic, so its offset is never committed
// ahead of them. A crash in between produces the outputs again on
// redelivery: at least once, end to end.

// OutputWriter produces a handler's outputs. WriteOutputs returns nil only
// once every output is durably written (acks from all in-sync replicas); an
// error marked handlers.Permanent (an output the broker will never take,
// such as one over its size limit) is not retried.
type OutputWriter interface {
	WriteOutputs(ctx context.Context, topic string, outs []handlers.Output) error
}

// emit produces the outputs of w's successful attempt to the onSuccess
// topic, retrying transient errors. It returns a permanent error for the
// failure policy (the message is then dead-lettered with that reason), or
// drained when the assignment drained first.
func (r *Runner) emit(ss *session, w *work, outs []handlers.Output) (err error, drained bool) {
	if r.opts.Outputs == nil {
		return handlers.Permanent(fmt.Errorf("onSuccess: this node has no output writer")), false
	}
	for i := range outs {
		outs[i] = handlers.FinishOutput(outs[i], &w.msg)
	}
	topic := r.spec.OnSuccess.Topic
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		ctx, cancel := context.WithTimeout(ss.invokeCtx, 30*time.Second)
		err := r.opts.Outputs.WriteOutputs(ctx, topic, outs)
		cancel()
		if err == nil {
			r.emitted.Add(uint64(len(outs)))
			return nil, false
		}
		if handlers.IsPermanent(err) {
			return handlers.Permanent(fmt.Errorf("producing the output to %s: %w", topic, err)), false
		}
		r.log.Error("producing outputs failed; retrying", "topic", topic, "err", err)
		select {
		case <-time.After(backoff):
		case <-ss.drainCh:
			return nil, true
		}
	}
}

// emitFailure produces a finally failed message to the onFailure topic,
// retrying until it is durable; false when the assignment drains first.
// The message keeps its key, value and headers, plus sluice-cause and
// sluice-error.
func (r *Runner) emitFailure(ss *session, w *work, f Failure) bool {
	if r.spec.OnFailure == nil || r.opts.Outputs == nil {
		return true
	}
	out := handlers.Output{Key: w.msg.Key, Value: w.msg.Value, Headers: append([]handlers.Header(nil), w.msg.Headers...)}
	errText := "unknown error"
	if f.Err != nil {
		errText = f.Err.Error()
	}
	out.Headers = append(out.Headers, handlers.Header{Key: HeaderError, Value: []byte(errText)})
	out = handlers.FinishOutput(out, &w.msg)
	topic := r.spec.OnFailure.Topic
	return r.writeDurably(ss, "producing to the onFailure topic "+topic, func(ctx context.Context) error {
		err := r.opts.Outputs.WriteOutputs(ctx, topic, []handlers.Output{out})
		if handlers.IsPermanent(err) {
			// Never taken by the broker: the dead-letter queue still has it.
			r.log.Error("the onFailure topic refused the message; it is only dead-lettered", "topic", topic, "err", err)
			return nil
		}
		return err
	})
}

// HeaderError is the header an onFailure message carries: the last
// failure.
const HeaderError = "sluice-error"
