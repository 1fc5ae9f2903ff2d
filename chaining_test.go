package sluice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

// A bad filter, a bad output topic and a takeover of a group that is
// unknown, active or on other topics are each refused at apply time with
// the field that is wrong, and change nothing.
func TestApplyRefusesBadFiltersOutputsAndTakeovers(t *testing.T) {
	n := startNode(t)
	if code, body := n.do(t, "POST", "/v1/topics/orders/messages", `{"messages":[{"key":"a","value":"1"},{"key":"b","value":"2"}]}`); code != 200 && code != 201 {
		t.Fatalf("publish: %d %s", code, body)
	}
	// A handler that feeds orders from thumbs: chain must not feed thumbs.
	if code, body := n.do(t, "PUT", "/v1/handlers/back", `{"name":"back","topic":"thumbs","http":{"url":"http://127.0.0.1:1/x"},"onSuccess":{"topic":"orders"}}`); code != 201 {
		t.Fatalf("apply back: %d %s", code, body)
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
		{"loop through another handler", spec(`,"onSuccess":{"topic":"thumbs"}`), "onSuccess.topic", "orders → chain → thumbs → back → orders"},
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
	// allowLoop forces a loop.
	if code, body := n.do(t, "PUT", "/v1/handlers/forced", `{"name":"forced","topic":"orders","http":{"url":"http://127.0.0.1:1/x"},"onSuccess":{"topic":"thumbs","allowLoop":true}}`); code != 201 {
		t.Fatalf("forced loop: %d %s", code, body)
	}
	// Once the legacy consumer has stopped, the takeover is accepted.
	if code, body := n.do(t, "PUT", "/v1/handlers/chain", spec(`,"startFrom":{"group":"legacy-orders"}`)); code != 201 {
		t.Fatalf("takeover after the legacy consumer stopped: %d %s", code, body)
	}
}

// A chain on one node: a filtered Go handler emits to thumbnails, where an
// HTTP handler's response bodies are produced to catalog. Exactly the
// matching uploads flow through both stages, once each, with the CloudEvents
// type and the sluice-cause of each hop; the rest are counted as filtered,
// in the status and in /metrics.
func TestChainGoToHTTPWithFilter(t *testing.T) {
	app, err := sluice.New(sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	filter, err := sluice.CompileFilter(map[string]any{"value": map[string]any{"kind": []any{"image"}}})
	if err != nil {
		t.Fatal(err)
	}
	err = app.Handle(sluice.Spec{Name: "thumbnail", Topic: "uploads", Filter: filter, OnSuccess: &sluice.OutputSpec{Topic: "thumbnails"}},
		func(ctx context.Context, m *sluice.Message) error {
			var u struct{ Name string }
			if err := json.Unmarshal(m.Value, &u); err != nil {
				return sluice.Permanent(err)
			}
			return sluice.Emit(ctx, sluice.Output{Value: []byte("thumb-" + u.Name),
				Headers: []sluice.Header{{Key: "ce_type", Value: []byte("thumbnail.made")}}})
		})
	if err != nil {
		t.Fatal(err)
	}
	n := runNode(t, app)

	var mu sync.Mutex
	got := map[string]int{} // body -> deliveries
	bad := []string{}
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[string(b)]++
		if r.Header.Get("Ce-Type") != "thumbnail.made" || !strings.HasPrefix(r.Header.Get("Sluice-Cause"), "uploads/") {
			bad = append(bad, fmt.Sprintf("%s: ce-type %q sluice-cause %q", b, r.Header.Get("Ce-Type"), r.Header.Get("Sluice-Cause")))
		}
		mu.Unlock()
		w.Header().Set("Ce-Type", "catalog.row")
		fmt.Fprintf(w, "row-%s", b)
	}))
	defer ep.Close()
	n.apply(t, fmt.Sprintf(`{"name":"catalog","topic":"thumbnails","http":{"url":%q},"onSuccess":{"topic":"catalog"}}`, ep.URL))

	const images, texts = 20, 10
	var msgs []string
	for i := range images + texts {
		kind := "image"
		if i >= images {
			kind = "text"
		}
		msgs = append(msgs, fmt.Sprintf(`{"key":"u%d","value":{"name":"f%d","kind":%q},"headers":{"traceparent":"00-%032x-00f067aa0ba902b7-01"}}`, i, i, kind, i+1))
	}
	if code, body := n.do(t, "POST", "/v1/topics/uploads/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	testkit.Eventually(t, 60*time.Second, func() bool {
		th, ca := n.handler(t, "thumbnail").Status, n.handler(t, "catalog").Status
		return th != nil && ca != nil && th.Filtered == texts && th.Emitted == images && ca.Emitted == images
	}, "%d filtered, %d emitted by each stage", texts, images)

	mu.Lock()
	if len(got) != images || len(bad) > 0 {
		t.Fatalf("catalog got %d distinct thumbnails, want %d; bad: %v", len(got), images, bad)
	}
	for i := range images {
		if c := got["thumb-f"+strconv.Itoa(i)]; c != 1 {
			t.Fatalf("thumb-f%d delivered %d times", i, c)
		}
	}
	mu.Unlock()

	tc := testkit.Topics(t, app.Brokers())
	ctx := context.Background()
	parts, err := tc.Partitions(ctx, "catalog")
	if err != nil {
		t.Fatal(err)
	}
	offs, err := tc.Offsets(ctx, "catalog", parts)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for p, r := range offs {
		err := tc.Read(ctx, "catalog", p, r.Start, r.End, func(m topics.Message) bool {
			var ceType, cause, tp string
			for _, h := range m.Headers {
				switch h.Key {
				case "ce_type":
					ceType = string(h.Value)
				case "sluice-cause":
					cause = string(h.Value)
				case "traceparent":
					tp = string(h.Value)
				}
			}
			if ceType != "catalog.row" || !strings.HasPrefix(cause, "thumbnails/") || !strings.HasPrefix(string(m.Key), "u") {
				t.Errorf("catalog record %q key %q: ce_type %q sluice-cause %q", m.Value, m.Key, ceType, cause)
			}
			// Two hops on, the record is still in the upload's trace.
			i, _ := strconv.Atoi(strings.TrimPrefix(string(m.Key), "u"))
			if want := fmt.Sprintf("00-%032x-", i+1); !strings.HasPrefix(tp, want) {
				t.Errorf("catalog record %q key %q: traceparent %q, want the upload's trace %s...", m.Value, m.Key, tp, want)
			}
			rows[string(m.Value)] = true
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(rows) != images {
		t.Fatalf("catalog topic has %d distinct rows, want %d", len(rows), images)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		v, ok := metricValue(scrape(t, n.base), "sluice_messages_filtered_total", map[string]string{"sluice_handler": "thumbnail"})
		return ok && v == texts
	}, "sluice_messages_filtered_total = %d", texts)
}
