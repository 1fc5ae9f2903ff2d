package handlers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// output.go: output chaining. A handler with onSuccess emits messages to
// another topic, where the next handler of a chain consumes them. The
// engine produces a successful invocation's outputs (acks=all) before the
// input counts as handled, so its offset is never committed ahead of them.

// OutputSpec is where a handler's outputs go.
type OutputSpec struct {
	// Topic receives the outputs. It must not be internal (__ prefix) and,
	// unless AllowLoop, not the handler's own topic.
	Topic string `json:"topic"`
	// AllowLoop lets Topic be the handler's own topic: every output is
	// then consumed again by the same handler. Default false.
	AllowLoop bool `json:"allowLoop,omitempty"`
}

// Output is one message a handler emits to its onSuccess topic.
type Output struct {
	// Key is the output's key; nil keeps the input's key.
	Key []byte
	// Value is the output's value.
	Value []byte
	// Headers are the output's headers. Sluice adds sluice-cause and, when
	// the handler's context or the input carries one, the trace context.
	Headers []Header
}

// HeaderCause is the header Sluice sets on an output: the id (Message.ID)
// of the input that caused it.
const HeaderCause = "sluice-cause"

// ErrNoOutputs is returned by Emit when the handler has no onSuccess topic
// (or the context is not an invocation's).
var ErrNoOutputs = errors.New("the handler has no onSuccess topic: set onSuccess.topic in its spec to emit outputs")

// Outputs collects what one invocation emits; safe for concurrent use.
type Outputs struct {
	mu   sync.Mutex
	list []Output
}

type outputsKey struct{}

// WithOutputs returns a context in which Emit collects into the returned
// Outputs. The engine calls it once per attempt; a failed attempt's outputs
// are dropped.
func WithOutputs(ctx context.Context) (context.Context, *Outputs) {
	o := &Outputs{}
	return context.WithValue(ctx, outputsKey{}, o), o
}

// Take returns the outputs collected so far and forgets them.
func (o *Outputs) Take() []Output {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.list
	o.list = nil
	return l
}

// Emit adds an output to the current invocation. The outputs are produced
// only if the invocation then succeeds (returns nil), all of them before
// the input's offset can be committed: at least once, end to end. Emit
// returns ErrNoOutputs when the handler has no onSuccess topic. The
// trace context of ctx, when it has one, travels with the output.
//
//	func thumbnail(ctx context.Context, m *handlers.Message) error {
//		t, err := resize(m.Value)
//		if err != nil {
//			return handlers.Permanent(err)
//		}
//		return handlers.Emit(ctx, handlers.Output{Value: t})
//	}
func Emit(ctx context.Context, out Output) error {
	o, _ := ctx.Value(outputsKey{}).(*Outputs)
	if o == nil {
		return ErrNoOutputs
	}
	out.Headers = append([]Header(nil), out.Headers...)
	carrier := map[string]string{}
	traceContext.Inject(ctx, propagationMapCarrier(carrier))
	if tp, ok := carrier["traceparent"]; ok {
		out.Headers = setHeader(out.Headers, "traceparent", tp)
		if ts, ok := carrier["tracestate"]; ok {
			out.Headers = setHeader(out.Headers, "tracestate", ts)
		}
	}
	o.mu.Lock()
	o.list = append(o.list, out)
	o.mu.Unlock()
	return nil
}

// FinishOutput gives an output what it inherits from its input: the
// input's key when it has none, the sluice-cause header, and the input's
// trace context when the handler's context had none.
func FinishOutput(out Output, in *Message) Output {
	if out.Key == nil {
		out.Key = in.Key
	}
	hs := make([]Header, 0, len(out.Headers)+3)
	for _, h := range out.Headers {
		if h.Key != HeaderCause {
			hs = append(hs, h)
		}
	}
	hs = append(hs, Header{Key: HeaderCause, Value: []byte(in.ID())})
	if _, ok := headerOf(hs, "traceparent"); !ok {
		if tp, ok := in.Header("traceparent"); ok {
			hs = append(hs, Header{Key: "traceparent", Value: tp})
			if ts, ok := in.Header("tracestate"); ok {
				hs = append(hs, Header{Key: "tracestate", Value: ts})
			}
		}
	}
	out.Headers = hs
	return out
}

func headerOf(hs []Header, key string) ([]byte, bool) {
	for _, h := range hs {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

func setHeader(hs []Header, key, value string) []Header {
	for i := range hs {
		if hs[i].Key == key {
			hs[i].Value = []byte(value)
			return hs
		}
	}
	return append(hs, Header{Key: key, Value: []byte(value)})
}

// MaxOutputBytes bounds the response body an HTTP handler may return as an
// output. The broker's own limit (message.max.bytes, 1 MiB by default) is
// usually lower; an output over either is a permanent failure.
const MaxOutputBytes = 16 << 20

// emitResponse turns a 2xx response with a body into an output: the body
// is the value; ce-type, ce-subject and content-type become the headers
// ce_type, ce_subject and content-type (the CloudEvents Kafka binding's
// names, which the next HTTP handler gets back as ce-* headers); a
// Sluice-Key (or Sluice-Key-Base64) replaces the input's key. An empty
// body emits nothing.
func emitResponse(ctx context.Context, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxOutputBytes+1))
	if err != nil {
		return fmt.Errorf("reading the response body for the output: %w", err)
	}
	if len(body) > MaxOutputBytes {
		return Permanent(fmt.Errorf("the response body is over %d bytes, too large for an output", MaxOutputBytes))
	}
	if len(body) == 0 {
		return nil
	}
	out := Output{Value: body}
	for _, h := range [...]struct{ http, kafka string }{{"Ce-Type", "ce_type"}, {"Ce-Subject", "ce_subject"}, {"Content-Type", "content-type"}} {
		if v := resp.Header.Get(h.http); v != "" {
			out.Headers = append(out.Headers, Header{Key: h.kafka, Value: []byte(v)})
		}
	}
	if k := resp.Header.Values(HeaderKey); len(k) > 0 {
		out.Key = []byte(k[0])
	} else if k := resp.Header.Get(HeaderKeyBase64); k != "" {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return Permanent(fmt.Errorf("the response's %s is not base64: %w", HeaderKeyBase64, err))
		}
		out.Key = b
	}
	return Emit(ctx, out)
}

type propagationMapCarrier map[string]string

func (c propagationMapCarrier) Get(k string) string { return c[strings.ToLower(k)] }
func (c propagationMapCarrier) Set(k, v string)     { c[strings.ToLower(k)] = v }
func (c propagationMapCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// validateOutputs checks onSuccess and onFailure.
func (s *Spec) validateOutputs() error {
	for _, o := range []struct {
		field string
		spec  *OutputSpec
	}{{"onSuccess", s.OnSuccess}, {"onFailure", s.OnFailure}} {
		if o.spec == nil {
			continue
		}
		f := o.field + ".topic"
		if err := ValidateTopic(f, o.spec.Topic); err != nil {
			return err
		}
		if strings.HasPrefix(o.spec.Topic, "__") {
			return &FieldError{Field: f, Msg: fmt.Sprintf("%q is an internal topic", o.spec.Topic)}
		}
		if o.spec.Topic == s.Topic && !o.spec.AllowLoop {
			return &FieldError{Field: f, Msg: fmt.Sprintf("%q is the handler's own topic: every output would come back to it, a loop; set %s.allowLoop: true if that is meant", o.spec.Topic, o.field)}
		}
		if s.DeadLetter != nil && o.spec.Topic == s.DeadLetter.Topic {
			return &FieldError{Field: f, Msg: fmt.Sprintf("%q is the handler's dead-letter topic", o.spec.Topic)}
		}
	}
	if s.OnSuccess != nil && s.Batch != nil && s.Batch.Size > 1 {
		return &FieldError{Field: "onSuccess", Msg: "is not supported with batch yet: remove batch, or onSuccess"}
	}
	return nil
}
