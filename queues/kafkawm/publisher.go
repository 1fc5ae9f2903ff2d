package kafkawm

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/topics"
)

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("kafkawm: publisher closed")

// Publisher writes Watermill messages to Kafka topics (see the package
// mapping). Safe for concurrent use.
type Publisher struct {
	tc *topics.Client
	tr *kafka.Transport

	mu      sync.RWMutex
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	pending sync.WaitGroup
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher for cfg. Nothing connects until the
// first Publish.
func NewPublisher(cfg Config) (*Publisher, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	tr := cfg.transport()
	tc, err := topics.New(topics.Config{
		Brokers: cfg.Kafka.Brokers, Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("kafkawm: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Publisher{tc: tc, tr: tr, ctx: ctx, cancel: cancel}, nil
}

// Publish writes msgs to topic, creating the topic when it is missing. It
// returns once every in-sync replica has every message; messages of one
// call that share a partition are written in their order. On error some
// messages may have been written.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return ErrPublisherClosed
	}
	p.pending.Add(1)
	p.mu.RUnlock()
	defer p.pending.Done()
	if len(msgs) == 0 {
		return nil
	}
	records := make([]topics.Record, len(msgs))
	for i, m := range msgs {
		records[i] = toRecord(m)
	}
	if _, err := p.tc.Produce(p.ctx, topic, records); err != nil {
		return fmt.Errorf("kafkawm: publishing to %s: %w", topic, err)
	}
	return nil
}

// Close waits for the Publish calls under way and refuses later ones. It
// may be called more than once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.pending.Wait()
	p.cancel()
	p.tr.CloseIdleConnections()
	return nil
}

// toRecord is m as a Kafka record (see the package mapping).
func toRecord(m *message.Message) topics.Record {
	names := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		if k != KeyHeader && k != UUIDHeader {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	hs := make([]kafka.Header, 0, len(names)+1)
	hs = append(hs, kafka.Header{Key: UUIDHeader, Value: []byte(m.UUID)})
	for _, k := range names {
		hs = append(hs, kafka.Header{Key: k, Value: []byte(m.Metadata[k])})
	}
	r := topics.Record{Value: m.Payload, Headers: hs, Partition: -1}
	if r.Value == nil {
		r.Value = []byte{} // nil would be a tombstone
	}
	if k, ok := m.Metadata[KeyHeader]; ok {
		r.Key = []byte(k)
	}
	return r
}
