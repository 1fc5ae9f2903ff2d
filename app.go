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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/dashboard"
	"github.com/sluicehq/sluice/dlq"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/registry"
	"github.com/sluicehq/sluice/retrytopics"
	"github.com/sluicehq/sluice/topics"
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

// App is one Sluice node.
type App struct {
	cfg   Config
	log   *slog.Logger
	funcs map[string]goHandler

	mu        sync.Mutex
	started   bool
	brokers   []string
	tc        *topics.Client
	reg       *registry.Registry
	dlq       *dlq.Queue
	httpAddr  string
	ready     chan struct{}
	sup       *supervisor
	startedAt time.Time
	nodeID    string
	tel       *metrics.Telemetry
	sampler   *metrics.Sampler
	instr     *metrics.Instruments
}

type goHandler struct {
	spec handlers.Spec
	fn   handlers.Invoker // a handlers.Func or handlers.BatchFunc
}

// New returns a node configured by opts over DefaultConfig. It validates
// the configuration but starts nothing: Run does.
func New(opts ...Option) (*App, error) {
	a := &App{cfg: DefaultConfig(), funcs: make(map[string]goHandler), ready: make(chan struct{})}
	for _, o := range opts {
		o(a)
	}
	a.cfg = a.cfg.withDefaults()
	if err := a.cfg.Validate(); err != nil {
		return nil, err
	}
	if a.log == nil {
		a.log = slog.Default()
	}
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
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return errors.New("handle: the node is already running")
	}
	if _, dup := a.funcs[spec.Name]; dup {
		return fmt.Errorf("handle: %q is registered twice", spec.Name)
	}
	a.funcs[spec.Name] = goHandler{spec: spec, fn: fn}
	return nil
}

// Started is closed once the API listens and the node has started.
func (a *App) Started() <-chan struct{} { return a.ready }

// HTTPAddr is the address the API listens on, once Started.
func (a *App) HTTPAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.httpAddr
}

// Brokers are the Kafka addresses the node uses (the embedded broker's when
// it runs one), once Started.
func (a *App) Brokers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.brokers
}

// Run starts the node and blocks until ctx is done; then it stops taking
// API calls, drains every handler (in-flight invocations finish and their
// offsets are committed), and closes the embedded broker last.
func (a *App) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.started {
		a.mu.Unlock()
		return errors.New("run: the node is already running")
	}
	a.started = true
	a.mu.Unlock()

	brokers := a.cfg.Brokers
	if len(brokers) == 0 {
		b, err := broker.Start(broker.Config{
			DataDir:    filepath.Join(a.cfg.DataDir, "broker"),
			Addr:       a.cfg.KafkaAddr,
			Partitions: a.cfg.Partitions,
			Logger:     a.log,
		})
		if err != nil {
			return err
		}
		defer b.Close()
		brokers = b.Addrs()
		a.log.Info("embedded Kafka broker started", "addr", strings.Join(brokers, ","), "data_dir", a.cfg.DataDir)
	}
	tc, err := topics.New(topics.Config{Brokers: brokers, Partitions: a.cfg.Partitions, ReplicationFactor: a.cfg.ReplicationFactor})
	if err != nil {
		return err
	}
	reg := registry.New(registry.Config{Topics: tc, Brokers: brokers, Logger: a.log})
	dq := dlq.New(tc, brokers, a.log)

	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http-addr %s: %w", a.cfg.HTTPAddr, err)
	}
	nodeID := nodeName(ln.Addr().String())
	tel, err := metrics.Setup(ctx, nodeID)
	if err != nil {
		ln.Close()
		return fmt.Errorf("setting up telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	a.mu.Lock()
	a.brokers, a.tc, a.reg, a.dlq, a.httpAddr, a.startedAt = brokers, tc, reg, dq, ln.Addr().String(), time.Now()
	a.nodeID, a.tel = nodeID, tel
	a.sup = newSupervisor(supervisorDeps{
		cfg: a.cfg, log: a.log, funcs: a.funcs, reg: reg, tc: tc,
		kafka: consumers.KafkaConfig{
			Brokers:          brokers,
			Dialer:           &kafka.Dialer{ClientID: nodeID, Timeout: 10 * time.Second, DualStack: true},
			SessionTimeout:   a.cfg.SessionTimeout,
			RebalanceTimeout: a.cfg.RebalanceTimeout(),
			ClientID:         nodeID,
			MemberData:       a.memberData(),
			Logger:           a.log,
		},
		dead: dq, parker: retrytopics.New(tc),
		hooks: func(spec handlers.Spec) consumers.Hooks { return a.instr.Hooks(spec) },
	})
	a.sampler = metrics.NewSampler(tc, a.targets, a.cfg.SampleInterval)
	a.mu.Unlock()
	instr, err := metrics.NewInstruments(tel, a.sampler, a.targets)
	if err != nil {
		ln.Close()
		return fmt.Errorf("creating instruments: %w", err)
	}
	a.instr = instr

	srv := &http.Server{
		Handler: api.NewServer(a, api.ServerConfig{
			MaxPublishBytes: a.cfg.MaxPublishBytes, Logger: a.log, Propagator: tel.Propagator,
			Metrics: tel.MetricsHandler, UI: dashboard.Handler(),
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("API server failed", "err", err)
		}
	}()
	a.log.Info("Sluice API listening", "addr", "http://"+ln.Addr().String())

	regCtx, stopReg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReg()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = reg.Run(regCtx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = dq.Run(regCtx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.sampler.Run(regCtx)
	}()
	supDone := make(chan struct{})
	go func() {
		defer close(supDone)
		a.sup.run(ctx)
	}()
	close(a.ready)

	<-ctx.Done()
	a.log.Info("stopping: draining handlers")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(shutCtx)
	cancel()
	<-supDone // every runner has drained and committed
	stopReg()
	wg.Wait()
	a.log.Info("stopped")
	return nil
}

// nodeName identifies this node in a fleet: host name and API port.
func nodeName(httpAddr string) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "sluice"
	}
	_, port, _ := net.SplitHostPort(httpAddr)
	return host + ":" + port
}

// memberData is what this node publishes about itself in each consumer
// group it joins, so any node can list the fleet (GET /v1/fleet).
func (a *App) memberData() []byte {
	b, _ := json.Marshal(api.MemberData{Node: a.nodeID, API: a.httpAddr, Version: Version})
	return b
}

// targets lists every registered handler with this node's runner of it.
func (a *App) targets() []metrics.Target {
	es := a.reg.List()
	out := make([]metrics.Target, len(es))
	for i, e := range es {
		out[i] = metrics.Target{Spec: e.Spec, Paused: e.Paused, Runner: a.sup.runner(e.Spec.Name)}
	}
	return out
}
