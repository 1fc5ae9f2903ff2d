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
