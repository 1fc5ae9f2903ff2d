package sluice_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/api"
)

// A bad filter, a bad output topic and a takeover of a group that is
// unknown, active or on other topics are each refused at apply time with
// the field that is wrong, and change nothing.
func TestApplyRefusesBadFiltersOutputsAndTakeovers(t *testing.T) {
	n := startNode(t)
	if code, body := n.do(t, "POST", "/v1/topics/orders/messages", `{"messages":[{"key":"a","value":"1"},{"key":"b","value":"2"}]}`); code != 200 && code != 201 {
		t.Fatalf("publish: %d %s", code, body)
	}
	// A live legacy consumer of orders.
	legacy := kafka.NewReader(kafka.ReaderConfig{Brokers: n.app.Brokers(), GroupID: "legacy-orders", Topic: "orders",
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
	defer legacy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := legacy.FetchMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := legacy.CommitMessages(ctx, m); err != nil {
		t.Fatal(err)
	}

	spec := func(extra string) string {
		return `{"name":"chain","topic":"orders","http":{"url":"http://127.0.0.1:1/x"}` + extra + `}`
	}
	cases := []struct {
		name, body, field, msg string
	}{
		{"bad filter", spec(`,"filter":{"value":{"price":[{"numeric":[">","zero"]}]}}`), "filter.value.price[0].numeric[1]", "must be a number"},
		{"filter unknown condition", spec(`,"filter":{"key":[{"suffix":"x"}]}`), "filter.key[0].suffix", "unknown condition"},
		{"output loop", spec(`,"onSuccess":{"topic":"orders"}`), "onSuccess.topic", "own topic"},
		{"internal output", spec(`,"onSuccess":{"topic":"__sluice.registry"}`), "onSuccess.topic", "internal topic"},
		{"output without topic", spec(`,"onSuccess":{}`), "onSuccess.topic", "is required"},
		{"unknown group", spec(`,"startFrom":{"group":"nobody"}`), "startFrom.group", `"nobody" does not exist`},
		{"active group", spec(`,"startFrom":{"group":"legacy-orders"}`), "startFrom.group", `"legacy-orders" still has 1 active member`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := n.do(t, "PUT", "/v1/handlers/chain", c.body)
			if code != 400 {
				t.Fatalf("status %d, want 400: %s", code, body)
			}
			var e api.Error
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body is not JSON: %s", body)
			}
			if e.Field != c.field || !strings.Contains(e.Error, c.msg) {
				t.Fatalf("got field %q error %q, want field %q containing %q", e.Field, e.Error, c.field, c.msg)
			}
		})
	}
	if err := legacy.Close(); err != nil {
		t.Fatal(err)
	}
	// A group with offsets on another topic only.
	code, body := n.do(t, "PUT", "/v1/handlers/chain", `{"name":"chain","topic":"payments","http":{"url":"http://127.0.0.1:1/x"},"startFrom":{"group":"legacy-orders"}}`)
	if code != 400 || !strings.Contains(string(body), "no committed offsets on topic payments") {
		t.Fatalf("takeover on another topic: %d %s", code, body)
	}
	if _, body := n.do(t, "GET", "/v1/handlers", ""); strings.Contains(string(body), `"chain"`) {
		t.Fatalf("a refused spec reached the registry: %s", body)
	}
	// Once the legacy consumer has stopped, the takeover is accepted.
	if code, body := n.do(t, "PUT", "/v1/handlers/chain", spec(`,"startFrom":{"group":"legacy-orders"}`)); code != 201 {
		t.Fatalf("takeover after the legacy consumer stopped: %d %s", code, body)
	}
}
