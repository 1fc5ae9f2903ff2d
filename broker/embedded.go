// Package broker runs the embedded Kafka-protocol broker that
// `sluice serve` uses when no --brokers are given: franz-go's kfake with its
// data directory, so topics, offsets and the handler registry survive a
// restart and a kill -9. It is the only package that knows kfake; everything
// else speaks plain Kafka to the addresses it returns.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/topics"
)

// DefaultAddr is where the embedded broker listens unless configured.
const DefaultAddr = "127.0.0.1:9092"

// Config configures the embedded broker.
type Config struct {
	// DataDir holds the broker's durable state. Required.
	DataDir string
	// Addr is where the (first) broker listens, host:port. Port 0 picks a
	// free port. Default 127.0.0.1:9092.
	Addr string
	// Partitions is the partition count of topics created on first use.
	// Default 12.
	Partitions int
	// Brokers is the number of brokers in the embedded cluster, listening
	// on consecutive ports from Addr (or free ports with port 0). Default 1.
	Brokers int
	// SyncWrites fsyncs every produced batch before acknowledging it. Off by
	// default: acknowledged data is in the OS page cache, which survives a
	// process crash (kill -9) but not a power loss.
	SyncWrites bool
	// SASL, when its Mechanism is set (PLAIN, SCRAM-SHA-256 or
	// SCRAM-SHA-512), is required of every client: User with Password is
	// the one account, a superuser.
	SASL SASL
	// TLS, when set, makes the broker speak only TLS, with this server
	// configuration.
	TLS *tls.Config
	// Logger receives the broker's warnings. Default slog.Default().
	Logger *slog.Logger
}

// SASL is the embedded broker's one account.
type SASL struct {
	Mechanism, User, Password string
}

// Embedded is a running embedded broker.
type Embedded struct {
	c     *kfake.Cluster
	addrs []string
	cfg   Config
	once  sync.Once
	// stopWatch ends the group watch; watchDone is closed when it has.
	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// Start starts the broker, loading any state in DataDir.
func Start(cfg Config) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded broker: data dir is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = topics.DefaultPartitions
	}
	if cfg.Brokers <= 0 {
		cfg.Brokers = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: --kafka-addr %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded broker: --kafka-addr %q: bad port", cfg.Addr)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded broker: creating data dir: %w", err)
	}
	ports := make([]int, cfg.Brokers)
	for i := range ports {
		if port != 0 {
			ports[i] = port + i
		}
	}
	opts := []kfake.Opt{
		kfake.DataDir(cfg.DataDir),
		kfake.NumBrokers(cfg.Brokers),
		kfake.Ports(ports...),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, _ := net.SplitHostPort(address)
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.GroupMinSessionTimeout(1000 * 1000 * 1000), // 1s: lets tests fail over quickly
		kfake.WithLogger(slogLogger{cfg.Logger}),
		kfake.ClusterID("sluice-embedded"),
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if cfg.SASL.Mechanism != "" {
		switch cfg.SASL.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			return nil, fmt.Errorf("embedded broker: SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", cfg.SASL.Mechanism)
		}
		if cfg.SASL.User == "" || cfg.SASL.Password == "" {
			return nil, errors.New("embedded broker: SASL needs a user and a password")
		}
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(cfg.SASL.Mechanism, cfg.SASL.User, cfg.SASL.Password))
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	e := &Embedded{c: c, addrs: c.ListenAddrs(), cfg: cfg, watchDone: make(chan struct{})}
	c.ControlKey(int16(kmsg.Metadata), e.createOnMetadata)
	if cfg.SASL.Mechanism != "" {
		if err := e.advertiseHandshakeV0(); err != nil {
			c.Close()
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	w := newGroupWatch(cfg.Logger)
	for _, k := range []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.OffsetCommit, kmsg.LeaveGroup} {
		c.ControlKey(int16(k), w.observe)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWatch = cancel
	go func() { defer close(e.watchDone); w.run(ctx, e.ownClientOpts()) }()
	return e, nil
}

// createOnMetadata creates, through the durable CreateTopic path, every
// topic a client asks to auto-create. kfake's own auto-creation from a
// Metadata request does not persist the topic, so a topic first produced to
// by an outside client (kcat, librdkafka) would vanish after a crash.
func (e *Embedded) createOnMetadata(req kmsg.Request) (kmsg.Response, error, bool) {
	mr, ok := req.(*kmsg.MetadataRequest)
	if !ok || !mr.AllowAutoTopicCreation {
		return nil, nil, false
	}
	for _, t := range mr.Topics {
		if t.Topic == nil || *t.Topic == "" || !validTopic(*t.Topic) {
			continue
		}
		if e.c.TopicInfo(*t.Topic) != nil {
			continue
		}
		if err := e.c.CreateTopic(*t.Topic, int32(e.cfg.Partitions), nil); err != nil {
			e.cfg.Logger.Debug("auto-creating topic", "topic", *t.Topic, "err", err)
		}
	}
	return nil, nil, false
}

func validTopic(t string) bool {
	if len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for _, c := range t {
		if !(c == '.' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// Addrs are the listening brokers' addresses, for any Kafka client.
func (e *Embedded) Addrs() []string { return e.addrs }

// Cluster exposes the kfake cluster for fault injection in tests.
func (e *Embedded) Cluster() *kfake.Cluster { return e.c }

// Close stops the broker, flushing its state to the data dir. Safe to call
// twice.
func (e *Embedded) Close() {
	e.once.Do(func() {
		e.stopWatch()
		<-e.watchDone
		e.c.Close()
	})
}

// Shutdown is Close for a context-aware caller.
func (e *Embedded) Shutdown(context.Context) error {
	e.Close()
	return nil
}

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		s.l.Error("broker: " + fmt.Sprintf(msg, args...))
	case kfake.LogLevelWarn:
		s.l.Debug("broker: " + fmt.Sprintf(msg, args...))
	}
}

// ownClientOpts are the options of a franz-go client of this broker's own
// (the group watch, the ApiVersions probe): its TLS and its account.
func (e *Embedded) ownClientOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(e.addrs...)}
	if e.cfg.TLS != nil {
		// Our own listener: no need to check the certificate we serve.
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{InsecureSkipVerify: true})) //nolint:gosec
	}
	a := e.cfg.SASL
	switch a.Mechanism {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: a.User, Pass: a.Password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: a.User, Pass: a.Password}.AsSha256Mechanism()))
	default:
		opts = append(opts, kgo.SASL(scram.Auth{User: a.User, Pass: a.Password}.AsSha512Mechanism()))
	}
	return opts
}

// advertiseHandshakeV0 makes SASL work for librdkafka before 2.10 (kcat,
// and the clients built on it): they log in only with a broker that lists
// SaslHandshake v0, which kfake (like Kafka 4) no longer does, and then use
// v1 anyway. To librdkafka alone, the broker's ApiVersions answer lists
// SaslHandshake from v0; every other client sees kfake's own answer.
func (e *Embedded) advertiseHandshakeV0() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(e.ownClientOpts()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "sluice", "1"
	own, err := cl.Broker(0).Request(ctx, req)
	if err != nil {
		return fmt.Errorf("reading the broker's own ApiVersions: %w", err)
	}
	base := own.(*kmsg.ApiVersionsResponse)
	e.c.ControlKey(int16(kmsg.ApiVersions), func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.c.KeepControl()
		req, ok := r.(*kmsg.ApiVersionsRequest)
		if !ok || req.Version != 3 || req.ClientSoftwareName != "librdkafka" {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
		resp.ApiKeys = append([]kmsg.ApiVersionsResponseApiKey(nil), base.ApiKeys...)
		for i := range resp.ApiKeys {
			if resp.ApiKeys[i].ApiKey == int16(kmsg.SASLHandshake) {
				resp.ApiKeys[i].MinVersion = 0
			}
		}
		resp.SupportedFeatures, resp.FinalizedFeatures = base.SupportedFeatures, base.FinalizedFeatures
		resp.FinalizedFeaturesEpoch = base.FinalizedFeaturesEpoch
		return resp, nil, true
	})
	return nil
}
