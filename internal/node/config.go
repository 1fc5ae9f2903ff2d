package node

import (
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/consumers"
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
	// are sampled for the dashboard and the lag metrics. Default 5s.
	SampleInterval time.Duration `yaml:"sampleInterval"`
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
	// RedeliverAfter is how long a queue (nats, redis, postgres) waits for
	// a consumer's acknowledgement before it gives the message to another:
	// how late a killed node's messages come back, and longer than a node
	// may hold one (retries, a breaker pause). Default 60s.
	RedeliverAfter time.Duration `yaml:"redeliverAfter"`
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
		NATSURL:            queues.DefaultNATSURL,
		AMQPURL:            queues.DefaultAMQPURL,
		RedisURL:           queues.DefaultRedisURL,
		PostgresURL:        queues.DefaultPostgresURL,
		RedeliverAfter:     queues.DefaultRedeliverAfter,
	}
}

// WithDefaults fills every zero field from DefaultConfig.
func (c Config) WithDefaults() Config {
	Merge(&c, c.zeroFrom(), true)
	return c
}

func (Config) zeroFrom() Config { return DefaultConfig() }

// Merge copies src's non-zero fields into dst: all of them, or with
// onlyIntoZero only those where dst's field is zero.
func Merge(dst *Config, src Config, onlyIntoZero bool) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src)
	for i := 0; i < d.NumField(); i++ {
		if s.Field(i).IsZero() || (onlyIntoZero && !d.Field(i).IsZero()) {
			continue
		}
		d.Field(i).Set(s.Field(i))
	}
}

// Validate reports the first field that is wrong, by its flag name.
func (c Config) Validate() error {
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil {
			return fmt.Errorf("brokers: %q is not host:port", b)
		}
	}
	if len(c.Brokers) == 0 {
		if _, _, err := net.SplitHostPort(c.KafkaAddr); err != nil {
			return fmt.Errorf("kafka-addr: %q is not host:port", c.KafkaAddr)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("http-addr: %q is not host:port", c.HTTPAddr)
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		return fmt.Errorf("partitions: must be between 1 and 10000, got %d", c.Partitions)
	}
	if c.ReplicationFactor == 0 || c.ReplicationFactor < -1 {
		return fmt.Errorf("replication-factor: must be -1 (broker default) or at least 1, got %d", c.ReplicationFactor)
	}
	if c.SessionTimeout < time.Second {
		return fmt.Errorf("session-timeout: must be at least 1s, got %s", c.SessionTimeout)
	}
	if c.CommitInterval < 10*time.Millisecond {
		return fmt.Errorf("commit-interval: must be at least 10ms, got %s", c.CommitInterval)
	}
	// The group waits RebalanceTimeout (the drain plus the final commit,
	// plus a margin) for members to rejoin; a dead member holds a rebalance
	// that long at most, so both stay bounded.
	if c.DrainTimeout < time.Second || c.DrainTimeout > 5*time.Minute {
		return fmt.Errorf("drain-timeout: must be between 1s and 5m, got %s", c.DrainTimeout)
	}
	if c.DrainGrace < time.Second || c.DrainGrace > time.Minute {
		return fmt.Errorf("drain-grace: must be between 1s and 1m, got %s", c.DrainGrace)
	}
	if c.FinalCommitTimeout < time.Second || c.FinalCommitTimeout > time.Minute {
		return fmt.Errorf("final-commit-timeout: must be between 1s and 1m, got %s", c.FinalCommitTimeout)
	}
	if c.SampleInterval < 100*time.Millisecond {
		return fmt.Errorf("sample-interval: must be at least 100ms, got %s", c.SampleInterval)
	}
	if c.MaxPublishBytes < 1024 {
		return fmt.Errorf("max-publish-bytes: must be at least 1024, got %d", c.MaxPublishBytes)
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
	return nil
}

// RebalanceTimeout is how long the group waits for members to drain and
// rejoin in a rebalance: the drain, the grace for handlers that ignore
// cancellation, the final commit, and a 5s margin.
func (c Config) RebalanceTimeout() time.Duration {
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
