// Package kafkawm offers Kafka as a Watermill Publisher and Subscriber
// (github.com/ThreeDotsLabs/watermill/message), on Sluice's own Kafka
// code: records are produced and partitions fetched with segmentio/kafka-go
// (package topics and consumers.KafkaSource's partition readers), and the
// consumer group is Sluice's (consumers.KafkaSource), the one every Kafka
// handler uses. It needs neither sarama nor watermill-kafka.
//
// Mapping between a Watermill message and a Kafka record:
//
//   - The payload is the record's value. A nil payload is written as an
//     empty value, never as a tombstone.
//   - The metadata entry KeyHeader ("key") is the record's key, which picks
//     the partition (murmur2, as the Java client); it is not written as a
//     header. A message without it has no key and goes to any partition.
//     A record read with a key gets the metadata entry "key".
//   - Every other metadata entry is a header of the same name, and every
//     header of a record read is a metadata entry (the last wins when a
//     name repeats).
//   - The UUID is the header UUIDHeader (_watermill_message_uuid). A record
//     written without one (by another client) is read with an empty UUID.
//
// Delivery (Subscriber): every Subscribe call is one member of the
// consumer group Config.ConsumerGroup, reading the topic's partitions
// assigned to it. Each partition has at most one message in hand at a time,
// so a partition's messages come in order. Ack commits the message's offset
// (the next one to read) before the partition's next message is sent. Nack
// sends the same message again after Config.NackResendSleep: nothing is
// skipped. A message neither acked nor nacked when its partition is taken
// away (a rebalance, Close, the Subscribe context's end) is not committed:
// the partition's next owner reads it again. Delivery is therefore at least
// once; order holds per partition, hence per key.
package kafkawm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/consumers"
)

// UUIDHeader is the Kafka header that carries the Watermill message UUID,
// the same as watermill-kafka's.
const UUIDHeader = "_watermill_message_uuid"

// KeyHeader is the metadata entry that carries the record's key, as in
// every other Sluice source (docs/queues.md).
const KeyHeader = "key"

// DefaultNackResendSleep is how long a nacked message waits before it is
// sent again, unless configured.
const DefaultNackResendSleep = 100 * time.Millisecond

// Config is how a Publisher or a Subscriber reaches Kafka.
type Config struct {
	// Kafka is the cluster and the group settings: Brokers (required),
	// Dialer (TLS and SASL of every connection), GroupSASL (the Dialer's
	// SASL login for the group's membership requests), ClientID, the group
	// timings (SessionTimeout, HeartbeatInterval, RebalanceTimeout), the
	// fetch tuning and Logger. The node's own consumers.KafkaConfig fits
	// as it is.
	Kafka consumers.KafkaConfig
	// Transport carries produce and topic-creation requests. Nil builds one
	// from Kafka.Dialer (its dial function, TLS, SASL and client id).
	Transport *kafka.Transport
	// ConsumerGroup is the Subscriber's consumer group. Required by
	// NewSubscriber; the Publisher ignores it.
	ConsumerGroup string
	// StartFromLatest makes a group without a committed offset start at
	// the end of a partition instead of its beginning (the default).
	StartFromLatest bool
	// Partitions of topics created when missing (by Publish, Subscribe or
	// SubscribeInitialize). Default topics.DefaultPartitions (12).
	Partitions int
	// ReplicationFactor of created topics; 0 is the broker's default.
	ReplicationFactor int
	// NackResendSleep is how long a nacked message waits before it is sent
	// again. Default DefaultNackResendSleep; negative means no wait.
	NackResendSleep time.Duration
}

func (c Config) validate(sub bool) error {
	if len(c.Kafka.Brokers) == 0 {
		return errors.New("kafkawm: Config.Kafka.Brokers is empty")
	}
	if sub && c.ConsumerGroup == "" {
		return errors.New("kafkawm: Config.ConsumerGroup is required by a subscriber")
	}
	if c.Partitions < 0 {
		return fmt.Errorf("kafkawm: Config.Partitions is %d; use 0 for the default or a positive count", c.Partitions)
	}
	return nil
}

// transport is the configured Transport, or one built from the Dialer.
func (c Config) transport() *kafka.Transport {
	if c.Transport != nil {
		return c.Transport
	}
	tr := &kafka.Transport{DialTimeout: 5 * time.Second, IdleTimeout: time.Minute, MetadataTTL: 10 * time.Second, ClientID: c.Kafka.ClientID}
	if d := c.Kafka.Dialer; d != nil {
		tr.Dial, tr.TLS, tr.SASL = d.DialFunc, d.TLS, d.SASLMechanism
		if tr.ClientID == "" {
			tr.ClientID = d.ClientID
		}
	}
	return tr
}

// checkTopic refuses a name Kafka would refuse, with the reason.
func checkTopic(topic string) error {
	if topic == "" || topic == "." || topic == ".." || len(topic) > 249 {
		return fmt.Errorf("kafkawm: topic %q: a Kafka topic is 1 to 249 characters, not . or ..", topic)
	}
	for _, r := range topic {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("kafkawm: topic %q: a Kafka topic may hold only a-z A-Z 0-9 . _ -", topic)
		}
	}
	return nil
}

type ctxKey int

const (
	partitionKey ctxKey = iota
	offsetKey
	timestampKey
)

// MessagePartitionFromCtx is the partition a received message was read
// from.
func MessagePartitionFromCtx(ctx context.Context) (int, bool) {
	p, ok := ctx.Value(partitionKey).(int)
	return p, ok
}

// MessageOffsetFromCtx is the offset of a received message in its
// partition.
func MessageOffsetFromCtx(ctx context.Context) (int64, bool) {
	o, ok := ctx.Value(offsetKey).(int64)
	return o, ok
}

// MessageTimestampFromCtx is the record's timestamp of a received message.
func MessageTimestampFromCtx(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(timestampKey).(time.Time)
	return t, ok
}
