package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/queues"
	"github.com/sluicehq/sluice/topics"
)

// Config is a node's deploy-time configuration. The zero value of each
// field takes the default documented on it (see DefaultConfig).
type Config struct {
	// Brokers are the bootstrap addresses of an external Kafka cluster. When
	// empty, the node starts the embedded broker.
	Brokers []string `yaml:"brokers"`
	// DataDir holds the embedded broker's data. Default ./sluice-data.
	DataDir string `yaml:"dataDir"`
	// KafkaAddr is where the embedded broker listens for any Kafka client.
	// Default 127.0.0.1:9092.
	KafkaAddr string `yaml:"kafkaAddr"`
	// HTTPAddr is where the API, metrics and dashboard listen. Default
	// 127.0.0.1:8080.
	HTTPAddr string `yaml:"httpAddr"`
	// Partitions is the partition count of topics created on first use.
	// Default 12.
	Partitions int `yaml:"partitions"`
	// ReplicationFactor of topics Sluice creates; -1 is the broker's
	// default. Default -1.
	ReplicationFactor int `yaml:"replicationFactor"`
	// SessionTimeout is how long a silent node keeps its partitions before
	// the group gives them to others. Default 10s.
	SessionTimeout time.Duration `yaml:"sessionTimeout"`
	// CommitInterval is how often finished offsets are committed. Default 1s.
	CommitInterval time.Duration `yaml:"commitInterval"`
	// DrainTimeout bounds how long a node waits for in-flight invocations
	// when partitions are revoked or it stops. Default 20s.
	DrainTimeout time.Duration `yaml:"drainTimeout"`
	// DrainGrace is how long cancelled invocations get to return after the
	// drain timeout, before the partitions are released anyway. Default 5s.
	DrainGrace time.Duration `yaml:"drainGrace"`
	// FinalCommitTimeout bounds the commit that ends an assignment (after
	// the drain). Default 10s.
	FinalCommitTimeout time.Duration `yaml:"finalCommitTimeout"`
	// MaxPublishBytes bounds one publish request body. Default 8 MiB.
	MaxPublishBytes int64 `yaml:"maxPublishBytes"`
	// SampleInterval is how often each handler's rates, latencies and lag
	// are sampled for the dashboard, the lag metrics and the desired fleet
	// size. Default 5s.
	SampleInterval time.Duration `yaml:"sampleInterval"`
	// ScalerAddr, when set, is where KEDA's external-scaler gRPC service
	// listens (package scaler). Default: not served.
	ScalerAddr string `yaml:"scalerAddr"`
	// HeartbeatInterval is how often a node checks in with each handler's
	// group. Default 1s; less than a third of SessionTimeout.
	HeartbeatInterval time.Duration `yaml:"heartbeatInterval"`
	// FixedRebalanceTimeout, when set, replaces the derived rebalance timeout
	// (see Config.RebalanceTimeout); it may not be shorter than the drain,
	// the grace and the final commit together.
	FixedRebalanceTimeout time.Duration `yaml:"rebalanceTimeout"`
	// Fetch tunes reading from Kafka.
	Fetch FetchConfig `yaml:"fetch"`
	// Insecure lets the API listen on a non-loopback address without
	// tokens (anyone who reaches it may do anything). Default false.
	Insecure bool `yaml:"insecure"`
	// API secures the API and the dashboard: TLS and bearer tokens.
	API APIConfig `yaml:"api"`
	// Kafka secures the connections to Brokers: TLS and SASL.
	Kafka KafkaSecurity `yaml:"kafka"`
	// Embedded configures the embedded broker's own listener.
	Embedded EmbeddedConfig `yaml:"embedded"`
	// Log is read by `sluice serve`; a Go program passes its own logger.
	Log LogConfig `yaml:"log"`
	// NATSURL is the NATS server (JetStream) of handlers with source nats.
	// Default nats://127.0.0.1:4222.
	NATSURL string `yaml:"natsURL"`
	// AMQPURL is the RabbitMQ server of handlers with source amqp. Default
	// amqp://guest:guest@127.0.0.1:5672/.
	AMQPURL string `yaml:"amqpURL"`
	// RedisURL is the Redis server of handlers with source redis. Default
	// redis://127.0.0.1:6379/0.
	RedisURL string `yaml:"redisURL"`
	// PostgresURL is the PostgreSQL database of handlers with source
	// postgres. Default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
	PostgresURL string `yaml:"postgresURL"`
	// RedeliverAfter is how long a queue (nats, redis) waits for
	// a consumer's acknowledgement before it gives the message to another:
	// how late a killed node's messages come back, and longer than a node
	// may hold one (retries, a breaker pause). Default 60s.
	RedeliverAfter time.Duration `yaml:"redeliverAfter"`
	// Handlers restricts where HTTP handlers may send requests.
	Handlers HandlersConfig `yaml:"handlers"`
}

// HandlersConfig restricts the destinations of HTTP handlers (server-side
// request forgery): checked when a spec is applied and on every connection
// the invoker opens (handlers.NetPolicy).
type HandlersConfig struct {
	// AllowedHosts and AllowedNetworks, when either is set, are the only
	// destinations allowed: a URL whose host is a name matching
	// AllowedHosts ("name" or "*.domain"), or whose address (resolved)
	// is in AllowedNetworks (CIDRs or addresses). Default: any.
	AllowedHosts    []string `yaml:"allowedHosts"`
	AllowedNetworks []string `yaml:"allowedNetworks"`
	// DeniedHosts are names refused whatever the allow lists say. Default
	// metadata.google.internal; "none" denies no name.
	DeniedHosts []string `yaml:"deniedHosts"`
	// DeniedNetworks are refused whatever the allow lists say. Default
	// link-local (169.254.0.0/16, fe80::/10) and the cloud metadata
	// addresses (handlers.DefaultDeniedNetworks); "none" denies none.
	DeniedNetworks []string `yaml:"deniedNetworks"`
}

// NetPolicy is the policy the lists say; "none" is an empty deny list.
func (h HandlersConfig) NetPolicy() (*handlers.NetPolicy, error) {
	none := func(l []string) []string {
		if len(l) == 1 && strings.EqualFold(strings.TrimSpace(l[0]), "none") {
			return nil
		}
		return l
	}
	p, err := handlers.NewNetPolicy(h.AllowedHosts, h.AllowedNetworks, none(h.DeniedHosts), none(h.DeniedNetworks))
	if err != nil {
		return nil, fmt.Errorf("handlers.%w", err)
	}
	return p, nil
}

// FetchConfig tunes each partition reader.
type FetchConfig struct {
	// MaxBytes bounds one fetch from a partition. Default 1 MiB.
	MaxBytes int `yaml:"maxBytes"`
	// MaxWait is the longest a fetch waits for new data. Default 250ms.
	MaxWait time.Duration `yaml:"maxWait"`
	// PrefetchMessages is how many messages each partition reader buffers
	// ahead of the engine. Default 256.
	PrefetchMessages int `yaml:"prefetchMessages"`
}

// APIConfig secures the API, the dashboard and /metrics.
type APIConfig struct {
	// TLS serves HTTPS from these files when both are set.
	TLS ServerTLS `yaml:"tls"`
	// Tokens are the bearer tokens the API accepts. With none (here and in
	// TokensFile) the API is open, and only on a loopback address unless
	// Insecure is set.
	Tokens []Token `yaml:"tokens"`
	// TokensFile is a YAML file with more tokens, a list in the form of
	// Tokens, read at start.
	TokensFile string `yaml:"tokensFile"`
	// Metrics is "open" (default: /metrics needs no token) or "token"
	// (any valid token, viewer and up).
	Metrics string `yaml:"metrics"`
	// AllowedHosts are the names a request's Host header may carry besides
	// IP addresses, localhost and httpAddr's host: "name", "*.domain", or
	// "*" for any. Others get 421, which stops DNS rebinding. Default none.
	AllowedHosts []string `yaml:"allowedHosts"`
}

// ServerTLS names a listener's certificate and key (PEM files).
type ServerTLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// Token is one API bearer token. Exactly one of Token (the token itself)
// and TokenSHA256 (the hex SHA-256 of the token) is set; only the hash is
// kept in memory.
type Token struct {
	Name        string `yaml:"name"`
	Role        string `yaml:"role"`
	Token       string `yaml:"token" secret:"true"`
	TokenSHA256 string `yaml:"tokenSHA256"`
}

// The API roles, each allowed what the one before it is, and more.
const (
	RoleViewer    = "viewer"    // reads everything, sees the dashboard
	RolePublisher = "publisher" // also publishes
	RoleAdmin     = "admin"     // also applies, deletes, pauses, replays, purges
)

// KafkaSecurity secures the connections to Config.Brokers.
type KafkaSecurity struct {
	TLS  ClientTLS `yaml:"tls"`
	SASL SASL      `yaml:"sasl"`
}

// ClientTLS is a Kafka client's TLS. It is on when Enabled or any file or
// ServerName is set; with no CAFile the system's roots are trusted.
type ClientTLS struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are the client's certificate, for mTLS.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName is the name the brokers' certificates must carry. Default
	// the host of the address dialled.
	ServerName string `yaml:"serverName"`
}

// On reports whether TLS is configured.
func (t ClientTLS) On() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// SASL is a SASL/PLAIN or SCRAM login. The password is Password, or read
// from PasswordRef (env:NAME or file:PATH).
type SASL struct {
	Mechanism   string `yaml:"mechanism"`
	Username    string `yaml:"username"`
	Password    string `yaml:"password" secret:"true"`
	PasswordRef string `yaml:"passwordRef"`
}

// The SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// EmbeddedConfig configures the embedded broker.
type EmbeddedConfig struct {
	// SyncWrites fsyncs every produced batch before acknowledging it.
	// Default false: acknowledged data survives a crash of the process but
	// not a power loss.
	SyncWrites bool `yaml:"syncWrites"`
	// SASL, when set, is required of every client; the node's own clients
	// log in with it.
	SASL SASL `yaml:"sasl"`
	// TLS, when set, makes the broker speak only TLS.
	TLS ServerTLS `yaml:"tls"`
}

// LogConfig is the log of `sluice serve`.
type LogConfig struct {
	// Format is text (default) or json.
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
}

// DefaultConfig returns the node's defaults. Each value has one home: the
// package it configures.
func DefaultConfig() Config {
	return Config{
		DataDir:            "./sluice-data",
		KafkaAddr:          broker.DefaultAddr,
		HTTPAddr:           "127.0.0.1:8080",
		Partitions:         topics.DefaultPartitions,
		ReplicationFactor:  -1,
		SessionTimeout:     consumers.DefaultSessionTimeout,
		CommitInterval:     consumers.DefaultCommitInterval,
		DrainTimeout:       consumers.DefaultDrainTimeout,
		DrainGrace:         consumers.DefaultDrainGrace,
		FinalCommitTimeout: consumers.DefaultFinalCommitTimeout,
		MaxPublishBytes:    api.DefaultMaxPublishBytes,
		SampleInterval:     metrics.DefaultSampleInterval,
		HeartbeatInterval:  consumers.DefaultHeartbeatInterval,
		Fetch: FetchConfig{
			MaxBytes:         consumers.DefaultFetchMaxBytes,
			MaxWait:          consumers.DefaultFetchMaxWait,
			PrefetchMessages: consumers.DefaultPrefetchMessages,
		},
		API:            APIConfig{Metrics: MetricsOpen},
		Log:            LogConfig{Format: "text", Level: "info"},
		NATSURL:        queues.DefaultNATSURL,
		AMQPURL:        queues.DefaultAMQPURL,
		RedisURL:       queues.DefaultRedisURL,
		PostgresURL:    queues.DefaultPostgresURL,
		RedeliverAfter: queues.DefaultRedeliverAfter,
		Handlers: HandlersConfig{
			DeniedHosts:    append([]string(nil), handlers.DefaultDeniedHosts...),
			DeniedNetworks: append([]string(nil), handlers.DefaultDeniedNetworks...),
		},
	}
}

// WithDefaults fills every zero field from DefaultConfig.
func (c Config) WithDefaults() Config {
	Merge(&c, c.zeroFrom(), true)
	return c
}

func (Config) zeroFrom() Config { return DefaultConfig() }

// Merge copies src's non-zero fields into dst: all of them, or with
// onlyIntoZero only those where dst's field is zero. It descends into
// nested sections, so a section sets only the keys it has.
func Merge(dst *Config, src Config, onlyIntoZero bool) {
	mergeValue(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src), onlyIntoZero)
}

func mergeValue(d, s reflect.Value, onlyIntoZero bool) {
	for i := 0; i < d.NumField(); i++ {
		df, sf := d.Field(i), s.Field(i)
		if sf.IsZero() {
			continue
		}
		if df.Kind() == reflect.Struct {
			mergeValue(df, sf, onlyIntoZero)
			continue
		}
		if onlyIntoZero && !df.IsZero() {
			continue
		}
		df.Set(sf)
	}
}

// MetricsOpen and MetricsToken are the values of APIConfig.Metrics.
const (
	MetricsOpen  = "open"
	MetricsToken = "token"
)

// Validate reports the first key that is wrong, by its path in the config
// file (`kafka.sasl.mechanism: want ...`). It reads no files: the node does
// that when it starts (see New).
func (c Config) Validate() error {
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil {
			return fmt.Errorf("brokers: %q is not host:port", b)
		}
	}
	if len(c.Brokers) == 0 {
		if _, _, err := net.SplitHostPort(c.KafkaAddr); err != nil {
			return fmt.Errorf("kafkaAddr: %q is not host:port", c.KafkaAddr)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("httpAddr: %q is not host:port", c.HTTPAddr)
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		return fmt.Errorf("partitions: must be between 1 and 10000, got %d", c.Partitions)
	}
	if c.ReplicationFactor == 0 || c.ReplicationFactor < -1 {
		return fmt.Errorf("replicationFactor: must be -1 (broker default) or at least 1, got %d", c.ReplicationFactor)
	}
	if c.SessionTimeout < time.Second {
		return fmt.Errorf("sessionTimeout: must be at least 1s, got %s", c.SessionTimeout)
	}
	if c.CommitInterval < 10*time.Millisecond {
		return fmt.Errorf("commitInterval: must be at least 10ms, got %s", c.CommitInterval)
	}
	// The group waits RebalanceTimeout (the drain plus the final commit,
	// plus a margin) for members to rejoin; a dead member holds a rebalance
	// that long at most, so both stay bounded.
	if c.DrainTimeout < time.Second || c.DrainTimeout > 5*time.Minute {
		return fmt.Errorf("drainTimeout: must be between 1s and 5m, got %s", c.DrainTimeout)
	}
	if c.DrainGrace < time.Second || c.DrainGrace > time.Minute {
		return fmt.Errorf("drainGrace: must be between 1s and 1m, got %s", c.DrainGrace)
	}
	if c.FinalCommitTimeout < time.Second || c.FinalCommitTimeout > time.Minute {
		return fmt.Errorf("finalCommitTimeout: must be between 1s and 1m, got %s", c.FinalCommitTimeout)
	}
	if c.SampleInterval < 100*time.Millisecond {
		return fmt.Errorf("sampleInterval: must be at least 100ms, got %s", c.SampleInterval)
	}
	if c.MaxPublishBytes < 1024 {
		return fmt.Errorf("maxPublishBytes: must be at least 1024, got %d", c.MaxPublishBytes)
	}
	if c.HeartbeatInterval < 100*time.Millisecond || 3*c.HeartbeatInterval > c.SessionTimeout {
		return fmt.Errorf("heartbeatInterval: must be at least 100ms and at most a third of sessionTimeout (%s), got %s", c.SessionTimeout, c.HeartbeatInterval)
	}
	if floor := c.DrainTimeout + c.DrainGrace + c.FinalCommitTimeout; c.FixedRebalanceTimeout != 0 && (c.FixedRebalanceTimeout < floor || c.FixedRebalanceTimeout > 10*time.Minute) {
		return fmt.Errorf("rebalanceTimeout: must be between drainTimeout + drainGrace + finalCommitTimeout (%s) and 10m, got %s", floor, c.FixedRebalanceTimeout)
	}
	if c.Fetch.MaxBytes < 1024 || c.Fetch.MaxBytes > 1<<30 {
		return fmt.Errorf("fetch.maxBytes: must be between 1024 and 1 GiB, got %d", c.Fetch.MaxBytes)
	}
	if c.Fetch.MaxWait < 10*time.Millisecond || c.Fetch.MaxWait > 30*time.Second {
		return fmt.Errorf("fetch.maxWait: must be between 10ms and 30s, got %s", c.Fetch.MaxWait)
	}
	if c.Fetch.PrefetchMessages < 1 || c.Fetch.PrefetchMessages > 100000 {
		return fmt.Errorf("fetch.prefetchMessages: must be between 1 and 100000, got %d", c.Fetch.PrefetchMessages)
	}
	if err := c.API.validate(); err != nil {
		return err
	}
	if err := c.Kafka.SASL.validate("kafka.sasl"); err != nil {
		return err
	}
	if (c.Kafka.TLS.CertFile == "") != (c.Kafka.TLS.KeyFile == "") {
		return errors.New("kafka.tls: certFile and keyFile go together (the client certificate for mTLS)")
	}
	if err := c.Embedded.SASL.validate("embedded.sasl"); err != nil {
		return err
	}
	if err := c.Embedded.TLS.validate("embedded.tls"); err != nil {
		return err
	}
	if len(c.Brokers) == 0 && !isLoopback(c.KafkaAddr) && (c.Embedded.SASL.Mechanism == "" || c.Embedded.TLS.CertFile == "") {
		return fmt.Errorf("kafkaAddr: %s is not a loopback address, so the embedded broker must require SASL and TLS: set embedded.sasl and embedded.tls", c.KafkaAddr)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: want text or json, got %q", c.Log.Format)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return fmt.Errorf("log.level: want debug, info, warn or error, got %q", c.Log.Level)
	}
	for _, u := range []struct{ flag, url, scheme string }{
		{"nats-url", c.NATSURL, "nats"}, {"amqp-url", c.AMQPURL, "amqp"},
		{"redis-url", c.RedisURL, "redis"}, {"postgres-url", c.PostgresURL, "postgres"},
	} {
		p, err := url.Parse(u.url)
		if err != nil || p.Host == "" || !strings.HasPrefix(p.Scheme, u.scheme) {
			return fmt.Errorf("%s: %q is not a %s:// URL", u.flag, u.url, u.scheme)
		}
	}
	if c.RedeliverAfter < time.Second || c.RedeliverAfter > time.Hour {
		return fmt.Errorf("redeliver-after: must be between 1s and 1h, got %s", c.RedeliverAfter)
	}
	if _, err := c.Handlers.NetPolicy(); err != nil {
		return err
	}
	return nil
}

func (a APIConfig) validate() error {
	if err := a.TLS.validate("api.tls"); err != nil {
		return err
	}
	switch a.Metrics {
	case MetricsOpen, MetricsToken:
	default:
		return fmt.Errorf("api.metrics: want open or token, got %q", a.Metrics)
	}
	for i, h := range a.AllowedHosts {
		name := strings.TrimPrefix(h, "*.")
		if h != "*" && (name == "" || strings.ContainsAny(name, "*/:@ ") || strings.Contains(name, "..")) {
			return fmt.Errorf("api.allowedHosts[%d]: %q is not a host name: use name, *.domain or *", i, h)
		}
	}
	return validateTokens("api.tokens", a.Tokens)
}

func validateTokens(path string, ts []Token) error {
	names := map[string]bool{}
	for i, t := range ts {
		p := fmt.Sprintf("%s[%d]", path, i)
		if t.Name == "" {
			return fmt.Errorf("%s.name: is required (it names the token in logs)", p)
		}
		if names[t.Name] {
			return fmt.Errorf("%s.name: %q is used twice", p, t.Name)
		}
		names[t.Name] = true
		switch t.Role {
		case RoleViewer, RolePublisher, RoleAdmin:
		default:
			return fmt.Errorf("%s.role: want viewer, publisher or admin, got %q", p, t.Role)
		}
		switch {
		case t.Token != "" && t.TokenSHA256 != "":
			return fmt.Errorf("%s: set token or tokenSHA256, not both", p)
		case t.Token == "" && t.TokenSHA256 == "":
			return fmt.Errorf("%s: token or tokenSHA256 is required", p)
		case t.Token != "" && len(t.Token) < 16:
			return fmt.Errorf("%s.token: must be at least 16 characters", p)
		case t.TokenSHA256 != "":
			if b, err := hex.DecodeString(t.TokenSHA256); err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%s.tokenSHA256: want 64 hex digits (sha256sum of the token)", p)
			}
		}
	}
	return nil
}

func (t ServerTLS) validate(path string) error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("%s: certFile and keyFile go together", path)
	}
	return nil
}

func (s SASL) validate(path string) error {
	if s == (SASL{}) {
		return nil
	}
	switch s.Mechanism {
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
	default:
		return fmt.Errorf("%s.mechanism: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", path, s.Mechanism)
	}
	if s.Username == "" {
		return fmt.Errorf("%s.username: is required with a mechanism", path)
	}
	switch {
	case s.Password != "" && s.PasswordRef != "":
		return fmt.Errorf("%s: set password or passwordRef, not both", path)
	case s.Password == "" && s.PasswordRef == "":
		return fmt.Errorf("%s: password or passwordRef is required", path)
	case s.PasswordRef != "":
		if err := checkRef(s.PasswordRef); err != nil {
			return fmt.Errorf("%s.passwordRef: %w", path, err)
		}
	}
	return nil
}

// isLoopback reports whether a host:port listens only on this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RebalanceTimeout is how long the group waits for members to drain and
// rejoin in a rebalance: the drain, the grace for handlers that ignore
// cancellation, the final commit, and a 5s margin.
func (c Config) RebalanceTimeout() time.Duration {
	if c.FixedRebalanceTimeout != 0 {
		return c.FixedRebalanceTimeout
	}
	return c.DrainTimeout + c.DrainGrace + c.FinalCommitTimeout + 5*time.Second
}

// StallAfter is how long a handler's group may go without forming before
// its state reads "stalled" (and sluice_consumer_group_stalled is 1): one
// rebalance timeout, two session timeouts for dead members to expire, and
// a margin. Its members leave and join afresh later, after 3 rebalance
// timeouts and 2 session timeouts (consumers.KafkaConfig.StallAfter).
func (c Config) StallAfter() time.Duration {
	return c.RebalanceTimeout() + 2*c.SessionTimeout + 10*time.Second
}
