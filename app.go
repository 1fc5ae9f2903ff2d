// Package sluice runs a Sluice node: it consumes the topics of registered
// handlers and invokes them, at least once, with the API on HTTPAddr.
//
// A Go program embeds Sluice to run handlers written in Go:
//
//	app, err := sluice.New(sluice.WithBrokers("kafka:9092"))
//	app.Handle(sluice.Spec{Name: "billing", Topic: "orders"}, func(ctx context.Context, m *sluice.Message) error {
//		return bill(ctx, m.Value)
//	})
//	err = app.Run(ctx)
package sluice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/node"
	"github.com/sluicehq/sluice/metrics"
)

// Message is what a handler receives; see handlers.Message.
type Message = handlers.Message

// Spec is a handler's registration; see handlers.Spec.
type Spec = handlers.Spec

// RetrySpec, BreakerSpec, DeadLetterSpec and Duration configure a Spec's
// failure policy; see the handlers package.
type (
	RetrySpec      = handlers.RetrySpec
	BreakerSpec    = handlers.BreakerSpec
	DeadLetterSpec = handlers.DeadLetterSpec
	Duration       = handlers.Duration
)

// Ordering says which messages of a handler may run at the same time; see
// handlers.Ordering.
type Ordering = handlers.Ordering

// The orderings, for Spec.Ordering.
const (
	// OrderingKey keeps each key's messages in order; different keys run in
	// parallel. The default.
	OrderingKey = handlers.OrderingKey
	// OrderingPartition runs each partition one message at a time.
	OrderingPartition = handlers.OrderingPartition
	// OrderingNone runs any message as soon as there is room.
	OrderingNone = handlers.OrderingNone
)

// The retry modes, for RetrySpec.Mode.
const (
	// RetryInPlace retries a message where it is (the default).
	RetryInPlace = handlers.RetryInPlace
	// RetryTopics parks a message on delay topics between attempts.
	RetryTopics = handlers.RetryTopics
)

// StartFrom says where a new handler starts reading; see handlers.StartFrom.
type StartFrom = handlers.StartFrom

// The starting points, for Spec.StartFrom.
const (
	// StartEarliest reads the topic from its first retained message. The
	// default.
	StartEarliest = handlers.StartEarliest
	// StartLatest reads only messages produced after the handler first joins.
	StartLatest = handlers.StartLatest
)

// Concurrency is a Spec's in-flight limit; see handlers.Concurrency.
type Concurrency = handlers.Concurrency

// Fixed is a fixed in-flight limit of n.
func Fixed(n int) Concurrency { return handlers.Fixed(n) }

// Adaptive is an in-flight limit that adapts between min and max.
func Adaptive(min, max int) Concurrency { return handlers.Adaptive(min, max) }

// HandlerFunc is a handler written in Go.
type HandlerFunc = func(ctx context.Context, m *Message) error

// BatchHandlerFunc is a Go handler that takes a batch of messages.
type BatchHandlerFunc = func(ctx context.Context, ms []*Message) error

// BatchError names the messages of a batch that failed; see
// handlers.BatchError.
type BatchError = handlers.BatchError

// BatchSpec configures batching; see handlers.BatchSpec.
type BatchSpec = handlers.BatchSpec

// Permanent marks an error as one retrying cannot fix.
func Permanent(err error) error { return handlers.Permanent(err) }

// OutputSpec is where a handler's outputs go (Spec.OnSuccess, Spec.OnFailure).
type OutputSpec = handlers.OutputSpec

// Output is one message a handler emits to its onSuccess topic.
type Output = handlers.Output

// Header is one Kafka record header.
type Header = handlers.Header

// Filter is a compiled event pattern (Spec.Filter); see CompileFilter.
type Filter = handlers.Filter

// CompileFilter compiles an event pattern, as decoded from YAML or JSON.
func CompileFilter(pattern any) (*Filter, error) { return handlers.CompileFilter(pattern) }

// Emit adds an output to the current invocation: it is produced to the
// handler's onSuccess topic, with the input's key unless it sets one, only
// if the invocation succeeds, and before the input's offset is committed.
// It returns ErrNoOutputs when the handler has no onSuccess topic.
func Emit(ctx context.Context, out Output) error { return handlers.Emit(ctx, out) }

// ErrNoOutputs is Emit's error for a handler without an onSuccess topic.
var ErrNoOutputs = handlers.ErrNoOutputs

// App is one Sluice node, as a Go program embeds it.
type App struct {
	cfg       Config
	log       *slog.Logger
	providers metrics.Providers
	n         *node.Node
}

// New returns a node configured by opts over DefaultConfig. It validates
// the configuration but starts nothing: Run does.
func New(opts ...Option) (*App, error) {
	a := &App{cfg: DefaultConfig()}
	for _, o := range opts {
		o(a)
	}
	n, err := node.New(a.cfg, a.log)
	if err != nil {
		return nil, err
	}
	n.Providers = a.providers
	a.n = n
	return a, nil
}

// Handle registers fn as the Go handler named spec.Name. When the node runs,
// the spec is written to the registry (unless it is already there as is)
// and the function consumes spec.Topic. spec.Go is implied; spec.HTTP must
// be unset. Handle must be called before Run.
func (a *App) Handle(spec Spec, fn HandlerFunc) error {
	if fn == nil {
		return errors.New("handle: nil function")
	}
	if spec.Batch != nil {
		return &handlers.FieldError{Field: "batch", Msg: "a batch handler is registered with HandleBatch"}
	}
	return a.register(spec, handlers.Func(fn))
}

// HandleBatch registers fn as the Go handler named spec.Name, taking up to
// spec.Batch.Size messages at once (default 100, gathered for at most
// spec.Batch.Window). fn returns nil when every message succeeded, a
// *BatchError naming the ones that failed (only those are retried and
// dead-lettered), or any other error to fail them all.
func (a *App) HandleBatch(spec Spec, fn BatchHandlerFunc) error {
	if fn == nil {
		return errors.New("handle batch: nil function")
	}
	if spec.Batch == nil {
		spec.Batch = &handlers.BatchSpec{Size: 100}
	}
	return a.register(spec, handlers.BatchFunc(fn))
}

func (a *App) register(spec Spec, fn handlers.Invoker) error {
	if spec.HTTP != nil {
		return &handlers.FieldError{Field: "http", Msg: "must be unset for a Go handler"}
	}
	spec.Go = &handlers.GoSpec{}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("handle %q: %w", spec.Name, err)
	}
	return a.n.Register(spec, fn)
}

// Started is closed once the API listens and the node has started.
func (a *App) Started() <-chan struct{} { return a.n.Started() }

// HTTPAddr is the address the API listens on, once Started.
func (a *App) HTTPAddr() string { return a.n.HTTPAddr() }

// Brokers are the Kafka addresses the node uses (the embedded broker's when
// it runs one), once Started.
func (a *App) Brokers() []string { return a.n.Brokers() }

// Run starts the node and blocks until ctx is done; then it stops taking
// API calls, drains every handler (in-flight invocations finish and their
// offsets are committed), leaves the consumer groups, and closes the
// embedded broker last.
func (a *App) Run(ctx context.Context) error {
	a.n.Version = Version
	return a.n.Run(ctx)
}
