package handlers_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

func TestStartFromGroup(t *testing.T) {
	s, err := handlers.ParseOne([]byte("name: orders-new\ntopic: orders\ngo: {}\nstartFrom: {group: legacy-orders-consumer}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := s.StartFrom.TakeoverGroup(); !ok || g != "legacy-orders-consumer" {
		t.Fatalf("takeover group %q %v", g, ok)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"startFrom":{"group":"legacy-orders-consumer"}`) {
		t.Fatalf("marshalled: %s", b)
	}
	var back handlers.Spec
	if err := json.Unmarshal(b, &back); err != nil || back.StartFrom != s.StartFrom {
		t.Fatalf("round trip: %v %q", err, back.StartFrom)
	}
	if l, err := handlers.ParseOne([]byte("name: x\ntopic: orders\ngo: {}\nstartFrom: latest\n")); err != nil || l.StartFrom != handlers.StartLatest {
		t.Fatalf("latest: %v %q", err, l.StartFrom)
	}
}

func TestStartFromErrors(t *testing.T) {
	cases := []struct{ yaml, field, msg string }{
		{"startFrom: {grp: x}", "startFrom.grp", "unknown field"},
		{"startFrom: {group: 3}", "startFrom.group", "must be a string"},
		{"startFrom: {group: \"\"}", "startFrom.group", "is required"},
		{"startFrom: {group: sluice.x}", "startFrom.group", "the handler's own group"},
		{"startFrom: \"group:x\"", "startFrom", "{group: NAME}"},
		{"startFrom: middle", "startFrom", "must be earliest, latest or {group: NAME}"},
		{"startFrom: [a]", "startFrom", "must be earliest, latest or {group: NAME}"},
		{"startFrom: {group: old}\nsource: nats", "startFrom.group", "only with source kafka"},
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
