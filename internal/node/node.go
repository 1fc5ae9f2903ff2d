package node

import (
	"context"
	"crypto/tls"
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
	"github.com/sluicehq/sluice/queues"
	"github.com/sluicehq/sluice/registry"
	"github.com/sluicehq/sluice/retrytopics"
	"github.com/sluicehq/sluice/scaler"
	"github.com/sluicehq/sluice/topics"
)

// Node is one Sluice node: the embedded broker (when it runs one), the
// state tables, the supervisor of the handlers' runners, telemetry and the
// API. Package sluice is its public face.
type Node struct {
	// Version is the build's version, shown in the overview and the fleet.
	Version string
	// Providers are the embedding program's OpenTelemetry providers, if any.
	Providers metrics.Providers

	// regMu serializes this node's read-check-write changes to the
	// registry (apply with a version, pause), so that two of them cannot
	// both pass the check.
	regMu sync.Mutex

	cfg      Config
	access   access
	kafka    kafkaAccess
	embedded embeddedAccess
	log      *slog.Logger
	funcs    map[string]goHandler
	// policy is where HTTP handlers may send requests (cfg.Handlers).
	policy *handlers.NetPolicy

	mu      sync.Mutex
	started bool
	brokers []string
	tc      *topics.Client
	reg     *registry.Registry
	dlq     *dlq.Queue
	// jobs runs the dead-letter replays and purges started through the
	// API; they run until the node stops, not with the request.
	jobs      *dlq.Jobs
	httpAddr  string
	ready     chan struct{}
	sup       *supervisor
	startedAt time.Time
	nodeID    string
	tel       *metrics.Telemetry
	sampler   *metrics.Sampler
	instr     *metrics.Instruments
	// queues reaches the queue servers of handlers whose source is not
	// Kafka.
	queues *queues.Queues
}

type goHandler struct {
	spec handlers.Spec
	fn   handlers.Invoker // a handlers.Func or handlers.BatchFunc
}

// New returns a node for cfg (zero fields take their defaults). It
// validates the configuration but starts nothing: Run does.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	acc, err := loadAccess(cfg)
	if err != nil {
		return nil, err
	}
	emb, err := loadEmbeddedAccess(cfg)
	if err != nil {
		return nil, err
	}
	ka, err := loadKafkaAccess(cfg, emb)
	if err != nil {
		return nil, err
	}
	policy, err := cfg.Handlers.NetPolicy()
	if err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, access: acc, kafka: ka, embedded: emb, log: log, policy: policy, funcs: make(map[string]goHandler), ready: make(chan struct{}), Version: "dev"}, nil
}

// Register adds fn as the Go handler of spec before Run. spec must be
// normalized and valid (package sluice checks it).
func (n *Node) Register(spec handlers.Spec, fn handlers.Invoker) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("handle: the node is already running")
	}
	if _, dup := n.funcs[spec.Name]; dup {
		return fmt.Errorf("handle: %q is registered twice", spec.Name)
	}
	n.funcs[spec.Name] = goHandler{spec: spec, fn: fn}
	return nil
}

// Started is closed once the API listens and the node has started.
func (n *Node) Started() <-chan struct{} { return n.ready }

// HTTPAddr is the address the API listens on, once Started.
func (n *Node) HTTPAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.httpAddr
}

// Brokers are the Kafka addresses the node uses (the embedded broker's when
// it runs one), once Started.
func (n *Node) Brokers() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.brokers
}

// Run starts the node and blocks until ctx is done; then it stops taking
// API calls, drains every handler (in-flight invocations finish and their
// offsets are committed), and closes the embedded broker last.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.started {
		n.mu.Unlock()
		return errors.New("run: the node is already running")
	}
	n.started = true
	n.mu.Unlock()

	var scalerLn net.Listener
	if n.cfg.ScalerAddr != "" {
		// Bound first: a taken address stops the start before anything runs.
		l, err := scaler.Listen(n.cfg.ScalerAddr)
		if err != nil {
			return err
		}
		scalerLn = l
		defer scalerLn.Close()
	}
	brokers, closeBroker, err := n.startBroker()
	if err != nil {
		return err
	}
	defer closeBroker()
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("httpAddr %s: %w", n.cfg.HTTPAddr, err)
	}
	if n.access.auth == nil && !isLoopback(n.cfg.HTTPAddr) {
		n.log.Warn("the API is open to anyone who can reach it: no tokens, and --insecure", "addr", ln.Addr().String())
	}
	nodeID := nodeName(ln.Addr().String())
	tel, err := metrics.Setup(ctx, nodeID, n.Providers)
	if err != nil {
		ln.Close()
		return fmt.Errorf("setting up telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	if err := n.assemble(brokers, nodeID, ln.Addr().String(), tel); err != nil {
		ln.Close()
		return err
	}
	if err := n.probeKafka(ctx); err != nil {
		ln.Close()
		return err
	}

	var wg sync.WaitGroup
	jobsCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	n.jobs = dlq.NewJobs(jobsCtx, n.nodeID, n.dlq)
	srv := n.serveAPI(ln, tel, &wg)
	// The state tables and the sampler outlive the handlers' drain: the
	// supervisor needs the registry until every runner has stopped.
	partsCtx, stopParts := context.WithCancel(context.WithoutCancel(ctx))
	defer stopParts()
	for _, run := range []func(context.Context){
		func(ctx context.Context) { _ = n.reg.Run(ctx) },
		func(ctx context.Context) { _ = n.dlq.Run(ctx) },
		n.sampler.Run,
	} {
		wg.Add(1)
		go func() { defer wg.Done(); run(partsCtx) }()
	}
	if scalerLn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := scaler.New(n.sampler).Serve(ctx, scalerLn, n.log); err != nil {
				n.log.Error("KEDA external scaler stopped", "err", err)
			}
		}()
	}
	supDone := make(chan struct{})
	go func() {
		defer close(supDone)
		n.sup.run(ctx)
	}()
	close(n.ready)

	<-ctx.Done()
	n.log.Info("stopping: draining handlers")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(shutCtx)
	cancel()
	<-supDone // every runner has drained, committed and left its group
	// A job cut short leaves what it did not mark dead.
	stopJobs()
	n.jobs.Wait()
	stopParts()
	wg.Wait()
	_ = n.queues.Close()
	n.log.Info("stopped")
	return nil
}

// startBroker starts the embedded broker when no brokers are configured,
// and returns the brokers to use and what closes them.
func (n *Node) startBroker() ([]string, func(), error) {
	if len(n.cfg.Brokers) > 0 {
		return n.cfg.Brokers, func() {}, nil
	}
	b, err := broker.Start(broker.Config{
		DataDir:    filepath.Join(n.cfg.DataDir, "broker"),
		Addr:       n.cfg.KafkaAddr,
		Partitions: n.cfg.Partitions,
		SyncWrites: n.cfg.Embedded.SyncWrites,
		SASL:       n.embedded.sasl,
		TLS:        n.embedded.tls,
		Logger:     n.log,
	})
	if err != nil {
		return nil, nil, err
	}
	brokers := b.Addrs()
	n.log.Info("embedded Kafka broker started", "addr", strings.Join(brokers, ","), "data_dir", n.cfg.DataDir,
		"tls", n.embedded.tls != nil, "sasl", n.embedded.sasl.Mechanism)
	return brokers, b.Close, nil
}

// assemble builds the node's parts: the topics client, the registry and
// dead-letter tables, the supervisor, the sampler and the instruments.
func (n *Node) assemble(brokers []string, nodeID, httpAddr string, tel *metrics.Telemetry) error {
	tr := &kafka.Transport{DialTimeout: 5 * time.Second, IdleTimeout: time.Minute, MetadataTTL: 10 * time.Second,
		ClientID: nodeID, TLS: n.kafka.tls, SASL: n.kafka.mech}
	tc, err := topics.New(topics.Config{Brokers: brokers, Partitions: n.cfg.Partitions, ReplicationFactor: n.cfg.ReplicationFactor, Transport: tr})
	if err != nil {
		return err
	}
	dialer := &kafka.Dialer{ClientID: nodeID, Timeout: 10 * time.Second, DualStack: true, TLS: n.kafka.tls, SASLMechanism: n.kafka.mech}
	reg := registry.New(registry.Config{Topics: tc, Brokers: brokers, Dialer: dialer, Logger: n.log})
	dq := dlq.New(tc, brokers, dialer, n.log)
	qs := queues.New(queues.Config{
		NATSURL: n.cfg.NATSURL, AMQPURL: n.cfg.AMQPURL, RedisURL: n.cfg.RedisURL, PostgresURL: n.cfg.PostgresURL,
		Node: nodeID, RedeliverAfter: n.cfg.RedeliverAfter, Logger: n.log,
	})
	// A queue handler's dead letters live on its own server.
	for _, src := range handlers.Sources {
		if src.IsQueue() {
			l, err := qs.DeadLetterLog(src)
			if err != nil {
				return err
			}
			dq.UseLog(src, l)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.brokers, n.tc, n.reg, n.dlq, n.httpAddr, n.startedAt = brokers, tc, reg, dq, httpAddr, time.Now()
	n.queues = qs
	n.nodeID, n.tel = nodeID, tel
	n.sup = newSupervisor(supervisorDeps{
		cfg: n.cfg, log: n.log, funcs: n.funcs, reg: reg, tc: tc, policy: n.policy,
		kafka: consumers.KafkaConfig{
			Brokers:           brokers,
			Dialer:            dialer,
			SessionTimeout:    n.cfg.SessionTimeout,
			HeartbeatInterval: n.cfg.HeartbeatInterval,
			RebalanceTimeout:  n.cfg.RebalanceTimeout(),
			FetchMaxBytes:     n.cfg.Fetch.MaxBytes,
			FetchMaxWait:      n.cfg.Fetch.MaxWait,
			PrefetchMessages:  n.cfg.Fetch.PrefetchMessages,
			ClientID:          nodeID,
			GroupSASL:         n.kafka.group,
			MemberData:        n.memberData(),
			Logger:            n.log,
		},
		dead: dq, dlq: dq, parker: retrytopics.New(tc), queues: qs,
		hooks: func(spec handlers.Spec) consumers.Hooks { return n.instr.Hooks(spec) },
	})
	n.sampler = metrics.NewSampler(tc, n.targets, n.cfg.SampleInterval)
	n.sampler.SetQueueBacklog(func(ctx context.Context, spec handlers.Spec) (metrics.QueueBacklog, error) {
		b, err := qs.Backlog(ctx, spec)
		return metrics.QueueBacklog{Waiting: b.Waiting, Unacked: b.Unacked, Oldest: b.Oldest}, err
	})
	instr, err := metrics.NewInstruments(tel, n.sampler, n.targets)
	if err != nil {
		return fmt.Errorf("creating instruments: %w", err)
	}
	n.instr = instr
	if err := metrics.ObserveInvalidRecords(tel, map[string]func() uint64{
		registry.Topic: reg.Invalid, dlq.StateTopic: dq.InvalidStates,
	}); err != nil {
		return fmt.Errorf("creating instruments: %w", err)
	}
	return nil
}

// serveAPI serves the API, metrics and dashboard on ln until Shutdown.
func (n *Node) serveAPI(ln net.Listener, tel *metrics.Telemetry, wg *sync.WaitGroup) *http.Server {
	srv := &http.Server{
		Handler: api.NewServer(n, api.ServerConfig{
			MaxPublishBytes: n.cfg.MaxPublishBytes, Logger: n.log, Propagator: tel.Propagator,
			Metrics: tel.MetricsHandler, UI: dashboard.Handler(),
			Auth: n.access.auth, MetricsNeedToken: n.cfg.API.Metrics == MetricsToken,
			AllowedHosts: n.allowedHosts(),
		}),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         n.access.tls,
		// A TLS handshake error from a scanner is no news.
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	scheme := "http://"
	if n.access.tls != nil {
		ln = tls.NewListener(ln, n.access.tls)
		scheme = "https://"
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("API server failed", "err", err)
		}
	}()
	n.log.Info("Sluice API listening", "addr", scheme+ln.Addr().String(), "auth", n.access.auth != nil)
	return srv
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
func (n *Node) memberData() []byte {
	b, _ := json.Marshal(api.MemberData{Node: n.nodeID, API: n.httpAddr, Version: n.Version})
	return b
}

// targets lists every registered handler with this node's runner of it.
func (n *Node) targets() []metrics.Target {
	es := n.reg.List()
	out := make([]metrics.Target, len(es))
	for i, e := range es {
		out[i] = metrics.Target{Spec: e.Spec, Paused: e.Paused, Runner: n.sup.runner(e.Spec.Name)}
	}
	return out
}

// allowedHosts are the names the API answers to: api.allowedHosts and
// httpAddr's host when it is a name.
func (n *Node) allowedHosts() []string {
	out := append([]string(nil), n.cfg.API.AllowedHosts...)
	if h, _, err := net.SplitHostPort(n.cfg.HTTPAddr); err == nil && h != "" && net.ParseIP(h) == nil {
		out = append(out, h)
	}
	return out
}
