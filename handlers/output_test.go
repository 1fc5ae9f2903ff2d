package handlers_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

func TestOutputSpecErrors(t *testing.T) {
	cases := []struct{ yaml, field, msg string }{
		{"onSuccess: {topic: orders}", "onSuccess.topic", "the handler's own topic"},
		{"onFailure: {topic: orders}", "onFailure.topic", "the handler's own topic"},
		{"onSuccess: {topic: __consumer_offsets}", "onSuccess.topic", "internal topic"},
		{"onSuccess: {}", "onSuccess.topic", "is required"},
		{"onSuccess: {topic: \"a b\"}", "onSuccess.topic", "not a valid topic name"},
		{"onSuccess: {topic: x.dlq}\ndeadLetter: {topic: x.dlq}", "onSuccess.topic", "dead-letter topic"},
		{"onSuccess: {topic: out}\nbatch: {size: 10}", "onSuccess", "not supported with batch"},
		{"onSuccess: {topic: out, loop: true}", "onSuccess.loop", "unknown field"},
	}
	for _, tc := range cases {
		t.Run(tc.yaml, func(t *testing.T) {
			_, err := handlers.ParseOne([]byte("name: x\ntopic: orders\ngo: {}\n" + tc.yaml + "\n"))
			var fe *handlers.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("got %v, want %s: ...%s...", err, tc.field, tc.msg)
			}
		})
	}
}

func TestOutputSpecLoopAllowed(t *testing.T) {
	s, err := handlers.ParseOne([]byte("name: x\ntopic: orders\ngo: {}\nonSuccess: {topic: orders, allowLoop: true}\nonFailure: {topic: orders-failed}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.OnSuccess.Topic != "orders" || !s.OnSuccess.AllowLoop || s.OnFailure.Topic != "orders-failed" {
		t.Fatalf("%+v %+v", s.OnSuccess, s.OnFailure)
	}
}
