package handlers_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

func TestSourceDefaultsAndRefusals(t *testing.T) {
	s, err := handlers.ParseOne([]byte("name: q\nsource: redis\ntopic: orders\nhttp: {url: http://x/}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Source != handlers.SourceRedis || s.Ordering != handlers.OrderingNone {
		t.Fatalf("source %q ordering %q, want redis and none (a queue keeps no key order)", s.Source, s.Ordering)
	}
	if k, err := handlers.ParseOne([]byte("name: k\ntopic: orders\nhttp: {url: http://x/}\n")); err != nil || k.SourceKind() != handlers.SourceKafka || k.Ordering != handlers.OrderingKey {
		t.Fatalf("default source: %+v %v", k, err)
	}
	for _, tc := range []struct{ spec, field, msg string }{
		{"source: sqs", "source", `must be kafka, nats, amqp, redis or postgres, got "sqs"`},
		{"source: amqp\nordering: key", "ordering", "must be none with source amqp"},
		{"source: nats\nordering: partition", "ordering", "must be none with source nats"},
		{"source: redis\nordering: none\nretry: {mode: topics, delays: [1s]}", "retry.mode", "must be inPlace with source redis"},
		{"source: amqp\nstartFrom: latest", "startFrom", "must be earliest with source amqp"},
		{"source: postgres\nstartFrom: latest", "startFrom", "must be earliest with source postgres"},
		{"source: redis\nbatch: {size: 4}", "batch", "is not supported with source redis"},
	} {
		_, err := handlers.ParseOne([]byte("name: q\ntopic: orders\nhttp: {url: http://x/}\n" + tc.spec + "\n"))
		var fe *handlers.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("%q: got %v, want %s: %s", tc.spec, err, tc.field, tc.msg)
		}
	}
	_, err = handlers.ParseOne([]byte("name: q\nsource: postgres\ntopic: orders.v1\nhttp: {url: http://x/}\n"))
	var fe *handlers.FieldError
	if !errors.As(err, &fe) || fe.Field != "topic" || !strings.Contains(fe.Msg, "table name") {
		t.Fatalf("postgres topic with a dot: %v", err)
	}
}

func TestMessageIDOfAQueuedMessage(t *testing.T) {
	m := handlers.Message{Topic: "orders", Offset: 7}
	if m.ID() != "orders/0/7" {
		t.Fatalf("id %q", m.ID())
	}
	m.Ref = "6f1c"
	if m.ID() != "orders/6f1c" {
		t.Fatalf("id with a ref %q", m.ID())
	}
}

// A queue handler keeps its dead letters on its own server by default
// ("<source>:<name>"); it may name another topic there, or a Kafka topic;
// never another server's, and never a name its server refuses.
func TestDeadLetterTopicOfAQueueHandler(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct{ source, name, want string }{
		{"", "h", "h.dlq"},
		{"kafka", "h", "h.dlq"},
		{"redis", "h", "redis:h.dlq"},
		{"nats", "h", "nats:h.dlq"},
		{"amqp", "h", "amqp:h.dlq"},
		{"postgres", "h", "postgres:h_dlq"},
		{"postgres", long, "postgres:" + long[:36] + "_dlq"},
	} {
		spec := "name: " + tc.name + "\ntopic: orders\nhttp: {url: http://x/}\n"
		if tc.source != "" {
			spec += "source: " + tc.source + "\n"
		}
		s, err := handlers.ParseOne([]byte(spec))
		if err != nil {
			t.Fatalf("%s: %v", tc.source, err)
		}
		if s.DeadLetter.Topic != tc.want {
			t.Errorf("source %q: dead-letter topic %q, want %q", tc.source, s.DeadLetter.Topic, tc.want)
		}
		if src, name := handlers.SplitDeadLetterTopic(s.DeadLetter.Topic); tc.source != "" && tc.source != "kafka" && (string(src) != tc.source || strings.Contains(name, ":")) {
			t.Errorf("split %q: %s %q", s.DeadLetter.Topic, src, name)
		}
	}
	for _, ok := range []string{"source: redis\ndeadLetter: {topic: 'redis:failed'}", "source: redis\ndeadLetter: {topic: failed.on.kafka}",
		"source: postgres\ndeadLetter: {topic: 'postgres:failed_orders'}"} {
		if _, err := handlers.ParseOne([]byte("name: q\ntopic: orders\nhttp: {url: http://x/}\n" + ok + "\n")); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, tc := range []struct{ spec, msg string }{
		{"source: redis\ndeadLetter: {topic: 'nats:failed'}", "a handler of source redis keeps its dead letters on its own server"},
		{"deadLetter: {topic: 'redis:failed'}", "a handler of source kafka keeps its dead letters on its own server"},
		{"source: postgres\ndeadLetter: {topic: 'postgres:failed.v1'}", "table name"},
		{"source: redis\ndeadLetter: {topic: 'redis:__sluice'}", "internal topic"},
		{"source: redis\ndeadLetter: {topic: 'redis:orders'}", "must differ from the handler's topic"},
		{"source: redis\ndeadLetter: {topic: 'redis:'}", "is required"},
		{"source: redis\ndeadLetter: {topic: 'redis:a b'}", "not a valid topic name"},
		{"deadLetter: {topic: 'sqs:failed'}", "not a valid topic name"},
	} {
		_, err := handlers.ParseOne([]byte("name: q\ntopic: orders\nhttp: {url: http://x/}\n" + tc.spec + "\n"))
		var fe *handlers.FieldError
		if !errors.As(err, &fe) || fe.Field != "deadLetter.topic" || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("%q: got %v, want deadLetter.topic: %s", tc.spec, err, tc.msg)
		}
	}
}
