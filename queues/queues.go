package queues

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
)

// Config is how a node reaches the queue servers. Each URL's default is
// the local server on its standard port (DefaultConfig).
type Config struct {
	// NATSURL is the NATS server (JetStream enabled).
	NATSURL string
	// AMQPURL is the RabbitMQ (AMQP 0-9-1) server.
	AMQPURL string
	// RedisURL is the Redis server, redis://host:port/db.
	RedisURL string
	// PostgresURL is the PostgreSQL database, postgres://user@host:port/db.
	PostgresURL string
	// Node names this node to the queues (the Redis consumer name's
	// prefix).
	Node string
	// RedeliverAfter is how long a message received and neither
	// acknowledged nor given back stays with its consumer before the queue
	// gives it to another: the Redis claim idle time, the JetStream ack
	// wait. It bounds how late the messages of a node killed with kill -9
	// are delivered again, and must exceed the longest a node holds a
	// message (its retries, a breaker pause). RabbitMQ and PostgreSQL need
	// none: a dead consumer's connection gives its messages back (the
	// RabbitMQ deliveries, the PostgreSQL group's ownership). Default 60s.
	RedeliverAfter time.Duration
	// Logger receives the adapters' logs. Default slog.Default().
	Logger *slog.Logger
}

// Defaults: the local servers on their standard ports.
const (
	DefaultNATSURL        = "nats://127.0.0.1:4222"
	DefaultAMQPURL        = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultRedisURL       = "redis://127.0.0.1:6379/0"
	DefaultPostgresURL    = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	DefaultRedeliverAfter = 60 * time.Second
)

// maxSubscriptions bounds the subscriptions (each a connection or a
// consumer on the server) that feed one handler on one node.
const maxSubscriptions = 64

// Queues is a node's way to the queue servers: the engine's sources, the
// publishers (publish, replay) and the backlogs. Connections for
// publishing are opened on first use and kept. Safe for concurrent use.
type Queues struct {
	cfg Config

	mu      sync.Mutex
	drivers map[handlers.Source]driver
}

// driver is one kind of queue server.
type driver interface {
	// publish writes msgs to topic, durably: it returns once the server
	// has them.
	publish(ctx context.Context, topic string, msgs []*message.Message) error
	// ping reports whether the server answers.
	ping(ctx context.Context) error
	// backlog is what group has yet to finish of topic.
	backlog(ctx context.Context, topic, group string) (Backlog, error)
	close() error
}

// subscriberDriver is a queue read through a Watermill Subscriber.
type subscriberDriver interface {
	// subscriber connects and provisions topic for group, and returns a
	// subscriber of its own (closing it closes its connection).
	subscriber(ctx context.Context, topic, group string, subs int, latest bool) (message.Subscriber, error)
}

// sourceDriver is a queue with a source of its own (PostgreSQL).
type sourceDriver interface {
	source(spec handlers.Spec, log *slog.Logger) (consumers.Source, error)
}

// Backlog is a handler's backlog on a queue, as near as the queue says.
type Backlog struct {
	// Waiting counts the messages not yet delivered to the group; -1 when
	// the queue cannot tell.
	Waiting int64 `json:"waiting"`
	// Unacked counts those delivered and not yet acknowledged; -1 when the
	// queue cannot tell.
	Unacked int64 `json:"unacked"`
	// Oldest is when the oldest message not yet finished (unacknowledged
	// or waiting) was written; zero when none is, or the queue cannot
	// tell (RabbitMQ: a queue cannot be read without taking messages).
	Oldest time.Time `json:"-"`
}

// New returns Queues for cfg; nothing connects until used.
func New(cfg Config) *Queues {
	if cfg.NATSURL == "" {
		cfg.NATSURL = DefaultNATSURL
	}
	if cfg.AMQPURL == "" {
		cfg.AMQPURL = DefaultAMQPURL
	}
	if cfg.RedisURL == "" {
		cfg.RedisURL = DefaultRedisURL
	}
	if cfg.PostgresURL == "" {
		cfg.PostgresURL = DefaultPostgresURL
	}
	if cfg.RedeliverAfter <= 0 {
		cfg.RedeliverAfter = DefaultRedeliverAfter
	}
	if cfg.Node == "" {
		cfg.Node = "sluice"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Queues{cfg: cfg, drivers: map[handlers.Source]driver{}}
}

// ErrUnknownSource is returned for a source that is not a queue Sluice
// reads through Watermill.
var ErrUnknownSource = errors.New("unknown source")

func (q *Queues) driver(kind handlers.Source) (driver, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d, ok := q.drivers[kind]; ok {
		return d, nil
	}
	var d driver
	var err error
	switch kind {
	case handlers.SourceRedis:
		d, err = newRedis(q.cfg)
	case handlers.SourceNATS:
		d, err = newNATS(q.cfg)
	case handlers.SourceAMQP:
		d, err = newAMQP(q.cfg)
	case handlers.SourcePostgres:
		d, err = newPostgres(q.cfg)
	default:
		return nil, fmt.Errorf("%w %q: use nats, amqp, redis or postgres", ErrUnknownSource, kind)
	}
	if err != nil {
		return nil, err
	}
	q.drivers[kind] = d
	return d, nil
}

// Source is the engine's source for a handler whose spec names a queue.
func (q *Queues) Source(spec handlers.Spec, log *slog.Logger) (consumers.Source, error) {
	d, err := q.driver(spec.Source)
	if err != nil {
		return nil, err
	}
	if sd, ok := d.(sourceDriver); ok {
		return sd.source(spec, log)
	}
	sd, ok := d.(subscriberDriver)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownSource, spec.Source)
	}
	subs := min(max(1, spec.Concurrency.Max), maxSubscriptions)
	latest := spec.StartFrom == handlers.StartLatest
	return consumers.NewWatermillSource(consumers.WatermillConfig{
		Kind:  string(spec.Source),
		Topic: spec.Topic,
		Open: func(ctx context.Context) (message.Subscriber, error) {
			return sd.subscriber(ctx, spec.Topic, spec.Group(), subs, latest)
		},
		Subscriptions: subs,
		Decode:        Decode,
		Check:         d.ping,
		Logger:        log,
	})
}

// Publish writes msgs to topic on kind's server and returns once the
// server has them all, in order.
func (q *Queues) Publish(ctx context.Context, kind handlers.Source, topic string, msgs []*message.Message) error {
	d, err := q.driver(kind)
	if err != nil {
		return err
	}
	if err := d.publish(ctx, topic, msgs); err != nil {
		return fmt.Errorf("publishing to %s %s: %w", kind, topic, err)
	}
	return nil
}

// Backlog is what the handler of spec has yet to finish on its queue.
func (q *Queues) Backlog(ctx context.Context, spec handlers.Spec) (Backlog, error) {
	d, err := q.driver(spec.Source)
	if err != nil {
		return Backlog{}, err
	}
	return d.backlog(ctx, spec.Topic, spec.Group())
}

// Ping reports whether kind's server answers.
func (q *Queues) Ping(ctx context.Context, kind handlers.Source) error {
	d, err := q.driver(kind)
	if err != nil {
		return err
	}
	return d.ping(ctx)
}

// Close closes the connections opened for publishing.
func (q *Queues) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	for k, d := range q.drivers {
		errs = append(errs, d.close())
		delete(q.drivers, k)
	}
	return errors.Join(errs...)
}

// uniqueName is prefix with a random suffix: a consumer name no earlier
// run of this node used.
func uniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// orAfter runs f and returns its error, or ctx's once ctx is done: some
// adapters' calls take no context.
func orAfter(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
