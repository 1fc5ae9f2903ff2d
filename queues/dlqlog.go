package queues

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// dlqlog.go: the dead-letter queue of a queue handler lives on the queue's
// own server (issue 13), as a log that can be listed without consuming it:
//
//	redis     a stream, its entries numbered 0-1, 0-2, ... (XADD 0-*)
//	nats      the JetStream stream that captures the subject, by sequence
//	amqp      a RabbitMQ stream queue (x-queue-type: stream), by offset
//	postgres  a watermill-sql table, by its offset column
//
// Package dlq keeps the list, show, replay and purge; it reads and writes
// a dead-letter topic through a DeadLetterLog, which has the shape of a
// single-partition Kafka topic: partition 0, offsets that only grow (gaps
// allowed), and records with a key, a value, headers and a time.

// DeadLetterLog is a queue server's dead-letter topics, read and written
// the way package dlq reads and writes a Kafka topic (topics.Client has
// the same methods). Safe for concurrent use.
type DeadLetterLog interface {
	// Partitions is 1 for a dead-letter topic that exists, and an error
	// wrapping topics.ErrUnknownTopic for one that does not.
	Partitions(ctx context.Context, topic string) (int, error)
	// Offsets gives partition 0's first offset and its end (one past the
	// last); Start == End when it holds nothing.
	Offsets(ctx context.Context, topic string, partitions int) (map[int]topics.Range, error)
	// Read calls fn for each record with from <= offset < to, in order,
	// until fn returns false. It consumes nothing: a record read stays.
	Read(ctx context.Context, topic string, partition int, from, to int64, fn func(topics.Message) bool) error
	// Produce appends records (Partition and the key's partitioning are
	// ignored) and returns once the server has them durably. It creates
	// the topic when missing.
	Produce(ctx context.Context, topic string, recs []topics.Record) ([]topics.Produced, error)
}

// deadLetterDriver is a driver that keeps dead-letter topics.
type deadLetterDriver interface {
	dlqPartitions(ctx context.Context, topic string) (int, error)
	dlqOffsets(ctx context.Context, topic string) (topics.Range, error)
	dlqRead(ctx context.Context, topic string, from, to int64, fn func(topics.Message) bool) error
	dlqProduce(ctx context.Context, topic string, recs []topics.Record) ([]topics.Produced, error)
	// dlqDelete removes the topic and its records (tests, and cleaning
	// up); deleting one that does not exist is no error.
	dlqDelete(ctx context.Context, topic string) error
}

// DeadLetterLog returns kind's dead-letter topics. It connects on first
// use, so it can be made while the server is down.
func (q *Queues) DeadLetterLog(kind handlers.Source) (DeadLetterLog, error) {
	if !kind.IsQueue() {
		return nil, fmt.Errorf("%w %q: use nats, amqp, redis or postgres", ErrUnknownSource, kind)
	}
	return &deadLetterLog{q: q, kind: kind}, nil
}

type deadLetterLog struct {
	q    *Queues
	kind handlers.Source
}

func (l *deadLetterLog) driver() (deadLetterDriver, error) {
	d, err := l.q.driver(l.kind)
	if err != nil {
		return nil, err
	}
	dd, ok := d.(deadLetterDriver)
	if !ok {
		return nil, fmt.Errorf("source %s keeps no dead-letter topics", l.kind)
	}
	return dd, nil
}

func (l *deadLetterLog) Partitions(ctx context.Context, topic string) (int, error) {
	d, err := l.driver()
	if err != nil {
		return 0, err
	}
	return d.dlqPartitions(ctx, topic)
}

func (l *deadLetterLog) Offsets(ctx context.Context, topic string, partitions int) (map[int]topics.Range, error) {
	d, err := l.driver()
	if err != nil {
		return nil, err
	}
	rg, err := d.dlqOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	return map[int]topics.Range{0: rg}, nil
}

func (l *deadLetterLog) Read(ctx context.Context, topic string, partition int, from, to int64, fn func(topics.Message) bool) error {
	if partition != 0 || from >= to {
		return nil
	}
	d, err := l.driver()
	if err != nil {
		return err
	}
	return d.dlqRead(ctx, topic, from, to, fn)
}

func (l *deadLetterLog) Produce(ctx context.Context, topic string, recs []topics.Record) ([]topics.Produced, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	d, err := l.driver()
	if err != nil {
		return nil, err
	}
	return d.dlqProduce(ctx, topic, recs)
}

// DeleteDeadLetterTopic removes a dead-letter topic of kind's server with
// its records.
func (q *Queues) DeleteDeadLetterTopic(ctx context.Context, kind handlers.Source, topic string) error {
	l := &deadLetterLog{q: q, kind: kind}
	d, err := l.driver()
	if err != nil {
		return err
	}
	return d.dlqDelete(ctx, topic)
}
