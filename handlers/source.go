package handlers

import (
	"fmt"
	"strings"
)

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

// A queue handler's dead letters are kept on its own queue server by
// default. Its deadLetter.topic then names the server as a prefix,
// "<source>:<name>" (Kafka topic names cannot hold a colon, so the two
// never mix up); a name without a prefix is a Kafka topic on the node's
// cluster, as for a Kafka handler.

// SplitDeadLetterTopic splits a dead-letter topic into the server that
// keeps it and its name there: "redis:orders.dlq" is (redis,
// "orders.dlq"), "orders.dlq" is (kafka, "orders.dlq").
func SplitDeadLetterTopic(topic string) (Source, string) {
	if src, name, ok := strings.Cut(topic, ":"); ok {
		if s, err := ParseSource(src); err == nil && s.IsQueue() {
			return s, name
		}
	}
	return SourceKafka, topic
}

// maxPgDeadLetter is the longest postgres dead-letter name: a table-name
// part, as a postgres topic is.
const maxPgDeadLetter = 40

// DefaultDeadLetterTopic is the dead-letter topic of a handler that names
// none: <name>.dlq on Kafka, and on the handler's own server for a queue
// (<name>_dlq on postgres, where a dot cannot be part of a table name,
// cut to fit; entries carry their handler, so two handlers sharing a cut
// name still list their own).
func DefaultDeadLetterTopic(source Source, name string) string {
	_, err := ParseSource(string(source))
	switch {
	case err != nil || !source.IsQueue():
		return name + ".dlq" // an unknown source is refused on its own
	case source == SourcePostgres:
		return string(source) + ":" + name[:min(len(name), maxPgDeadLetter-4)] + "_dlq"
	default:
		return string(source) + ":" + name + ".dlq"
	}
}

// ValidateDeadLetterTopic checks a dead-letter topic for a handler of
// source whose topic is own: a Kafka topic name, or one on the handler's
// own queue server that the server accepts, outside Sluice's own names
// (starting with __) and never the handler's own topic.
func ValidateDeadLetterTopic(field string, source Source, topic, own string) error {
	where, name := SplitDeadLetterTopic(topic)
	if where.IsQueue() && where != source.kind() {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q is on %s: a handler of source %s keeps its dead letters on its own server (%s:<name>) or in a Kafka topic (a name with no prefix)",
			topic, where, source.kind(), source.kind())}
	}
	if err := ValidateTopic(field, name); err != nil {
		return err
	}
	if err := ValidateSourceTopic(where, field, name); err != nil {
		return err
	}
	if strings.HasPrefix(name, "__") {
		// Sluice's own topics (the registry, the dead-letter states, every
		// handler's replay and delay topics) are not a place to write to:
		// a dead letter there would be read back as state or replayed in
		// a loop.
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q is an internal topic: names starting with __ belong to Sluice", topic)}
	}
	if name == own && where == source.kind() {
		return &FieldError{Field: field, Msg: "must differ from the handler's topic"}
	}
	return nil
}

// kind is s, Kafka when empty.
func (s Source) kind() Source {
	if s == "" {
		return SourceKafka
	}
	return s
}
