package sluice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/internal/testkit"
)

// One trace id runs from the publisher through the consumer to the header
// the endpoint receives, for the publish API and for the Go client.
func TestTraceContextTravelsFromPublishToTheEndpoint(t *testing.T) {
	n := startNode(t)
	var mu sync.Mutex
	got := map[string]string{} // body -> traceparent received
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[string(b)] = r.Header.Get("Traceparent")
		mu.Unlock()
	}))
	defer ep.Close()
	n.apply(t, fmt.Sprintf(`{"name":"traced","topic":"traces","http":{"url":%q}}`, ep.URL))

	const apiTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", n.base+"/v1/topics/traces/messages", strings.NewReader(`{"messages":[{"value":"via-api"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-"+apiTrace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("publish: %v %v", err, resp)
	}
	resp.Body.Close()

	c, err := client.New(n.base)
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	v := json.RawMessage(`"via-client"`)
	if _, err := c.Publish(ctx, "traces", []api.PublishMessage{{Value: v}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 }, "both messages")
	mu.Lock()
	defer mu.Unlock()
	tp := regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$`)
	for body, want := range map[string]string{"via-api": apiTrace, "via-client": tid.String()} {
		m := tp.FindStringSubmatch(got[body])
		if m == nil || m[1] != want {
			t.Fatalf("%s: endpoint got traceparent %q, want trace id %s", body, got[body], want)
		}
		if m[2] == "00f067aa0ba902b7" || m[2] == "b7ad6b7169203331" {
			t.Fatalf("%s: the endpoint saw the publisher's span id, not the consumer span's", body)
		}
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(b)
}

// metricValue finds the sample of name whose labels include all of want.
func metricValue(exposition, name string, want map[string]string) (float64, bool) {
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, name+"{") && !(len(want) == 0 && strings.HasPrefix(line, name+" ")) {
			continue
		}
		ok := true
		for k, v := range want {
			if !strings.Contains(line, k+`="`+v+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		return f, err == nil
	}
	return 0, false
}

func TestMetricsAndOverviewCountWhatHappened(t *testing.T) {
	app, err := sluice.New(sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger()), sluice.WithSampleInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	n := runNode(t, app)
	ep := newScripted(t, func(body string, _ int) (int, http.Header, time.Duration) {
		if strings.HasPrefix(body, "bad") {
			return 400, nil, 0
		}
		return 200, nil, time.Millisecond
	})
	n.apply(t, fmt.Sprintf(`{"name":"counted","topic":"metered","http":{"url":%q},"concurrency":16}`, ep.URL))
	n.publishN(t, "metered", "ok-", 0, 200, 10)
	n.publishN(t, "metered", "bad-", 0, 3, 3)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.handler(t, "counted").Status.DeadLettered == 3 && ep.okCount() == 200 }, "200 handled and 3 dead-lettered")

	labels := map[string]string{"sluice_handler": "counted", "messaging_destination_name": "metered"}
	var text string
	testkit.Eventually(t, 10*time.Second, func() bool {
		text = scrape(t, n.base)
		v, ok := metricValue(text, "sluice_messages_succeeded_total", labels)
		return ok && v == 200
	}, "succeeded = 200 in /metrics")
	for name, want := range map[string]float64{
		"messaging_client_consumed_messages_total": 203,
		"sluice_messages_dead_lettered_total":      3,
		"sluice_messages_failed_total":             3,
		"sluice_concurrency_limit":                 16,
	} {
		if v, ok := metricValue(text, name, labels); !ok || v != want {
			t.Errorf("%s = %v (found %v), want %v", name, v, ok, want)
		}
	}
	// Nothing waits or arrives any more: the handler, and the fleet, need
	// the handler's minNodes (1).
	testkit.Eventually(t, 30*time.Second, func() bool {
		text := scrape(t, n.base)
		d, ok := metricValue(text, "sluice_desired_nodes", map[string]string{"sluice_handler": "counted"})
		f, fok := metricValue(text, "sluice_fleet_desired_nodes", nil)
		return ok && fok && d == 1 && f == 1
	}, "sluice_desired_nodes and sluice_fleet_desired_nodes = 1 once the backlog is gone")
	if v, ok := metricValue(text, "messaging_process_duration_seconds_count", map[string]string{"sluice_handler": "counted", "sluice_outcome": "success"}); !ok || v != 200 {
		t.Errorf("process duration count %v, want 200", v)
	}
	// Lag per partition, measured by Sluice: zero once everything is committed.
	testkit.Eventually(t, 10*time.Second, func() bool {
		text = scrape(t, n.base)
		sum, found := 0.0, 0
		for p := 0; p < 12; p++ {
			if v, ok := metricValue(text, "messaging_kafka_consumer_lag", map[string]string{"sluice_handler": "counted",
				"messaging_destination_name": "metered", "messaging_destination_partition_id": strconv.Itoa(p)}); ok {
				sum += v
				found++
			}
		}
		return found == 12 && sum == 0
	}, "a lag of 0 on each of the 12 partitions")
	for _, name := range []string{"sluice_message_delay_seconds_bucket", "sluice_breaker_state", "sluice_commit_duration_seconds_count", "sluice_rebalances_total"} {
		if !strings.Contains(text, name+"{") {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// The overview and the series tell the same story.
	var ov api.Overview
	_, body := n.do(t, "GET", "/v1/overview", "")
	if err := json.Unmarshal(body, &ov); err != nil || len(ov.Handlers) != 1 {
		t.Fatalf("overview: %s", body)
	}
	h := ov.Handlers[0]
	if h.Name != "counted" || h.State != "running" || h.Succeeded != 200 || h.DeadLettered != 3 || h.Invoker != ep.URL || h.Lag != 0 {
		t.Fatalf("overview row %+v", h)
	}
	// The series shows a flow between two samples: publish more, and poll.
	n.publishN(t, "metered", "more-", 0, 300, 10)
	var s api.Series
	testkit.Eventually(t, 20*time.Second, func() bool {
		_, body := n.do(t, "GET", "/v1/handlers/counted/series", "")
		if err := json.Unmarshal(body, &s); err != nil {
			return false
		}
		var in, p99 float64
		for _, p := range s.Points {
			in += p.RateIn * s.IntervalSeconds
			p99 = max(p99, p.P99Ms)
		}
		return in > 0 && p99 > 0
	}, "a sample with a rate in and a p99")
	testkit.Eventually(t, 20*time.Second, func() bool { return n.handler(t, "counted").Status.Lag == 0 }, "lag 0")
	var pl api.PartitionList
	_, body = n.do(t, "GET", "/v1/handlers/counted/partitions", "")
	if err := json.Unmarshal(body, &pl); err != nil {
		t.Fatalf("partitions: %s", body)
	}
	var end int64
	owned := 0
	for _, p := range pl.Partitions {
		if p.Topic == "metered" {
			end += p.LogEnd
			if p.Owner != "" {
				owned++
			}
			if p.LogEnd > 0 && p.Committed != p.LogEnd || p.Lag != 0 {
				t.Fatalf("partition %+v not fully committed", p)
			}
		}
	}
	if end != 503 || owned != 12 {
		t.Fatalf("partitions: log ends sum to %d (want 503), %d owned (want 12)", end, owned)
	}
	if code, _ := n.do(t, "GET", "/v1/handlers/nope/series", ""); code != 404 {
		t.Fatalf("series of an unknown handler: %d", code)
	}
}
