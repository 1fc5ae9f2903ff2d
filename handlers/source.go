package handlers

import "fmt"

// Source names the kind of queue a handler consumes.
type Source string

// The sources. Kafka is read by Sluice's own consumer group; the others
// through Watermill (package queues).
const (
	// SourceKafka: a Kafka topic. The default.
	SourceKafka Source = "kafka"
	// SourceNATS: a NATS JetStream subject.
	SourceNATS Source = "nats"
	// SourceAMQP: a RabbitMQ (AMQP 0-9-1) durable queue.
	SourceAMQP Source = "amqp"
	// SourceRedis: a Redis stream.
	SourceRedis Source = "redis"
	// SourcePostgres: a PostgreSQL table in watermill-sql's schema.
	SourcePostgres Source = "postgres"
)

// Sources lists every source, the default first.
var Sources = []Source{SourceKafka, SourceNATS, SourceAMQP, SourceRedis, SourcePostgres}

// ParseSource reads a source name; "" is Kafka.
func ParseSource(s string) (Source, error) {
	if s == "" {
		return SourceKafka, nil
	}
	for _, k := range Sources {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown source %q: use kafka, nats, amqp, redis or postgres", s)
}

// IsQueue reports whether s is a queue that acknowledges each message
// (every source but Kafka).
func (s Source) IsQueue() bool { return s != "" && s != SourceKafka }

// SourceKind is the spec's source, Kafka when none is named.
func (s *Spec) SourceKind() Source {
	if s.Source == "" {
		return SourceKafka
	}
	return s.Source
}

// validateSource checks what a queue source can keep of the spec. A queue
// shared by competing consumers has no partitions and no per-key order (a
// key's messages can be on two nodes at once, and a message given back
// comes after later ones), and no delay topics of its own.
func (s *Spec) validateSource() error {
	if _, err := ParseSource(string(s.Source)); err != nil {
		return &FieldError{Field: "source", Msg: fmt.Sprintf("must be kafka, nats, amqp, redis or postgres, got %q", s.Source)}
	}
	if !s.Source.IsQueue() {
		return nil
	}
	if s.Ordering != OrderingNone {
		return &FieldError{Field: "ordering", Msg: fmt.Sprintf("must be none with source %s: a queue shared by competing consumers keeps no order by key or partition", s.Source)}
	}
	if s.Retry != nil && s.Retry.Mode == RetryTopics {
		return &FieldError{Field: "retry.mode", Msg: fmt.Sprintf("must be inPlace with source %s: delay topics are Kafka topics", s.Source)}
	}
	if s.Batch != nil {
		return &FieldError{Field: "batch", Msg: fmt.Sprintf("is not supported with source %s", s.Source)}
	}
	if (s.Source == SourceAMQP || s.Source == SourcePostgres) && s.StartFrom == StartLatest {
		return &FieldError{Field: "startFrom", Msg: fmt.Sprintf("must be earliest with source %s: the queue has no position to start from", s.Source)}
	}
	return ValidateSourceTopic(s.Source, "topic", s.Topic)
}

// ValidateSourceTopic checks what source asks of a topic name beyond
// ValidateTopic: on postgres it is part of a table name.
func ValidateSourceTopic(source Source, field, topic string) error {
	if source == SourcePostgres && !pgTopicRE.MatchString(topic) {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q: with source postgres the topic is part of a table name: use up to 40 of a-z A-Z 0-9 _ -", topic)}
	}
	return nil
}
