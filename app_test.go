package sluice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

type node struct {
	app  *sluice.App
	base string
	stop func()
}

func startNode(t *testing.T, opts ...sluice.Option) *node {
	t.Helper()
	all := append([]sluice.Option{
		sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"), sluice.WithHTTPAddr("127.0.0.1:0"),
		sluice.WithLogger(testkit.Logger()),
	}, opts...)
	app, err := sluice.New(all...)
	if err != nil {
		t.Fatal(err)
	}
	return runNode(t, app)
}

func runNode(t *testing.T, app *sluice.App) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("node exited: %v", err)
	}
	n := &node{app: app, base: "http://" + app.HTTPAddr()}
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Error("node did not stop within 60s")
			}
		})
	}
	t.Cleanup(n.stop)
	testkit.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get(n.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "node ready")
	return n
}

func (n *node) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, n.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" || method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// endpoint is a real HTTP server recording what it receives.
type endpoint struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string]int // ce-id -> deliveries
	reqs   []*http.Request
	values []string
	count  atomic.Int64
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{bodies: map[string]int{}}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.bodies[r.Header.Get("Ce-Id")]++
		if len(e.reqs) < 100 {
			r.Body = io.NopCloser(bytes.NewReader(b))
			e.reqs = append(e.reqs, r)
			e.values = append(e.values, string(b))
		}
		e.mu.Unlock()
		e.count.Add(1)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) distinct() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.bodies)
}

func TestHTTPHandlerReceivesPublishedMessagesWithCloudEventsHeaders(t *testing.T) {
	n := startNode(t)
	ep := newEndpoint(t)
	spec := fmt.Sprintf(`{"name":"greeter","topic":"greetings","http":{"url":%q,"headers":{"X-Team":"growth","Authorization":"Bearer good"}},"concurrency":4}`, ep.URL)
	if code, body := n.do(t, "PUT", "/v1/handlers/greeter", spec); code != 201 {
		t.Fatalf("apply: %d %s", code, body)
	}
	// Applying the same spec again is idempotent: 200, not created.
	if code, body := n.do(t, "PUT", "/v1/handlers/greeter", spec); code != 200 {
		t.Fatalf("re-apply: %d %s", code, body)
	}
	code, body := n.do(t, "POST", "/v1/topics/greetings/messages",
		`{"messages":[{"key":"alice","value":"hello","headers":{"trace":"abc","ce_type":"com.example.greeting","authorization":"evil","ce_id":"forged"}},{"value":{"n":1}},{"valueBase64":"AAEC"}]}`)
	if code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	var pr api.PublishResponse
	if err := json.Unmarshal(body, &pr); err != nil || len(pr.Results) != 3 {
		t.Fatalf("publish response %s: %v", body, err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { return ep.count.Load() >= 3 }, "3 deliveries")
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var alice *http.Request
	vals := map[string]bool{}
	for i, r := range ep.reqs {
		vals[ep.values[i]] = true
		if r.Header.Get("Sluice-Key") == "alice" {
			alice = r
		}
	}
	if !vals["hello"] || !vals[`{"n":1}`] || !vals["\x00\x01\x02"] {
		t.Fatalf("bodies %q", ep.values)
	}
	if alice == nil {
		t.Fatal("no request carried Sluice-Key: alice")
	}
	want := map[string]string{
		"Ce-Specversion": "1.0",
		"Ce-Id":          fmt.Sprintf("greetings/%d/%d", pr.Results[0].Partition, pr.Results[0].Offset),
		"Ce-Source":      "/sluice/topics/greetings",
		"Ce-Type":        "com.example.greeting",
		"Sluice-Attempt": "1",
		"Trace":          "abc",
		"X-Team":         "growth",
		"Authorization":  "Bearer good", // configured headers win over the producer's
	}
	for k, v := range want {
		if got := alice.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, alice.Header.Get("Ce-Time")); err != nil {
		t.Errorf("ce-time %q: %v", alice.Header.Get("Ce-Time"), err)
	}
}

func TestGoHandlerLibrary(t *testing.T) {
	app, err := sluice.New(sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	var got sync.Map
	var count atomic.Int64
	err = app.Handle(sluice.Spec{Name: "billing", Topic: "orders", Concurrency: sluice.Fixed(8)}, func(ctx context.Context, m *sluice.Message) error {
		if m.Topic != "orders" || m.Attempt != 1 || m.Time.IsZero() {
			return fmt.Errorf("bad message %+v", m)
		}
		if v, ok := m.Header("h"); !ok || string(v) != "1" {
			return fmt.Errorf("missing header")
		}
		got.Store(string(m.Key)+"="+string(m.Value), true)
		count.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := runNode(t, app)
	testkit.Eventually(t, 20*time.Second, func() bool {
		code, _ := n.do(t, "GET", "/v1/handlers/billing", "")
		return code == 200
	}, "the Go handler registered itself")
	var msgs []string
	for i := 0; i < 50; i++ {
		msgs = append(msgs, fmt.Sprintf(`{"key":"k%d","value":"v%d","headers":{"h":"1"}}`, i, i))
	}
	if code, body := n.do(t, "POST", "/v1/topics/orders/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { return count.Load() >= 50 }, "50 deliveries")
	for i := 0; i < 50; i++ {
		if _, ok := got.Load(fmt.Sprintf("k%d=v%d", i, i)); !ok {
			t.Fatalf("message %d not delivered", i)
		}
	}
	// Applying a Go spec for a function this node does not have is refused.
	code, body := n.do(t, "PUT", "/v1/handlers/ghost", `{"name":"ghost","topic":"orders","go":{}}`)
	if code != 400 || !strings.Contains(string(body), `"field": "go"`) {
		t.Fatalf("ghost Go handler: %d %s", code, body)
	}
}

func TestPauseResumeDelete(t *testing.T) {
	n := startNode(t)
	ep := newEndpoint(t)
	spec := fmt.Sprintf(`{"name":"pausable","topic":"p-topic","http":{"url":%q}}`, ep.URL)
	if code, body := n.do(t, "PUT", "/v1/handlers/pausable", spec); code != 201 {
		t.Fatalf("apply: %d %s", code, body)
	}
	publish := func(from, to int) {
		var msgs []string
		for i := from; i < to; i++ {
			msgs = append(msgs, `{"key":"k`+strconv.Itoa(i)+`","value":"`+strconv.Itoa(i)+`"}`)
		}
		if code, body := n.do(t, "POST", "/v1/topics/p-topic/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	publish(0, 20)
	testkit.Eventually(t, 20*time.Second, func() bool { return ep.distinct() == 20 }, "first 20")
	code, body := n.do(t, "POST", "/v1/handlers/pausable/pause", "")
	if code != 200 || !strings.Contains(string(body), `"paused": true`) {
		t.Fatalf("pause: %d %s", code, body)
	}
	publish(20, 40)
	testkit.Consistently(t, 1500*time.Millisecond, func() bool { return ep.distinct() == 20 },
		"a paused handler stays silent (distinct deliveries: %d)", ep.distinct())
	var h api.Handler
	_, body = n.do(t, "GET", "/v1/handlers/pausable", "")
	if err := json.Unmarshal(body, &h); err != nil || h.Status.State != "paused" || h.Status.Lag != 20 {
		t.Fatalf("paused handler view: %s", body)
	}
	// The backlog's oldest message is as old as the pause, give or take a
	// sample interval (5s by default).
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, body = n.do(t, "GET", "/v1/handlers/pausable", "")
		return json.Unmarshal(body, &h) == nil && h.Status.OldestAgeSeconds > 0
	}, "the oldest unprocessed message's age while paused")
	if code, body := n.do(t, "POST", "/v1/handlers/pausable/resume", ""); code != 200 {
		t.Fatalf("resume: %d %s", code, body)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { return ep.distinct() == 40 }, "all 40 after resume")
	if code, _ := n.do(t, "DELETE", "/v1/handlers/pausable", ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	publish(40, 50)
	testkit.Consistently(t, 1500*time.Millisecond, func() bool { return ep.distinct() == 40 },
		"a deleted handler stays silent")
	if code, _ := n.do(t, "GET", "/v1/handlers/pausable", ""); code != 404 {
		t.Fatalf("get after delete: %d", code)
	}
}

func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	n := startNode(t)
	good := `{"name":"keeper","topic":"t1","http":{"url":"http://127.0.0.1:1/x"}}`
	if code, body := n.do(t, "PUT", "/v1/handlers/keeper", good); code != 201 {
		t.Fatalf("apply: %d %s", code, body)
	}
	_, before := n.do(t, "GET", "/v1/handlers", "")
	cases := []struct {
		name, method, path, body string
		status                   int
		field, msg               string
	}{
		{"malformed yaml", "PUT", "/v1/handlers/keeper", "name: [keeper", 400, "", "malformed"},
		{"unknown field", "PUT", "/v1/handlers/keeper", `{"name":"keeper","topic":"t1","http":{"url":"http://x/","retries":3}}`, 400, "http.retries", "unknown field"},
		{"bad url", "PUT", "/v1/handlers/keeper", `{"name":"keeper","topic":"t1","http":{"url":"ftp://x/"}}`, 400, "http.url", "absolute http(s) URL"},
		{"relative url", "PUT", "/v1/handlers/keeper", `{"name":"keeper","topic":"t1","http":{"url":"/hook"}}`, 400, "http.url", "absolute http(s) URL"},
		{"bad name", "PUT", "/v1/handlers/Bad_Name", `{"name":"Bad_Name","topic":"t1","http":{"url":"http://x/"}}`, 400, "name", "must match"},
		{"name mismatch", "PUT", "/v1/handlers/keeper", `{"name":"other","topic":"t1","http":{"url":"http://x/"}}`, 400, "name", "does not match"},
		{"bad ordering", "PUT", "/v1/handlers/keeper", `{"name":"keeper","topic":"t1","http":{"url":"http://x/"},"ordering":"random"}`, 400, "ordering", "key, partition or none"},
		{"bad concurrency", "PUT", "/v1/handlers/keeper", `{"name":"keeper","topic":"t1","http":{"url":"http://x/"},"concurrency":-1}`, 400, "concurrency", "between 1"},
		{"wrong type", "PUT", "/v1/handlers/keeper", `{"name":"keeper","topic":"t1","http":{"url":"http://x/","timeout":5}}`, 400, "http.timeout", "duration"},
		{"no invoker", "PUT", "/v1/handlers/keeper", `{"name":"keeper","topic":"t1"}`, 400, "http", "one invoker"},
		{"bad topic", "PUT", "/v1/handlers/keeper", `{"name":"keeper","topic":"a b","http":{"url":"http://x/"}}`, 400, "topic", "not a valid topic"},
		{"unknown handler get", "GET", "/v1/handlers/nope", "", 404, "", "not found"},
		{"unknown handler delete", "DELETE", "/v1/handlers/nope", "", 404, "", "not found"},
		{"unknown handler pause", "POST", "/v1/handlers/nope/pause", "", 404, "", "not found"},
		{"publish bad topic", "POST", "/v1/topics/bad%20topic/messages", `{"messages":[{"value":"x"}]}`, 400, "topic", "not a valid topic"},
		{"publish no messages", "POST", "/v1/topics/t1/messages", `{"messages":[]}`, 400, "messages", "at least one"},
		{"publish unknown field", "POST", "/v1/topics/t1/messages", `{"messages":[{"vaule":"x"}]}`, 400, "messages[0].vaule", "unknown field"},
		{"publish bad base64", "POST", "/v1/topics/t1/messages", `{"messages":[{"valueBase64":"!!"}]}`, 400, "messages[0].valueBase64", "base64"},
		{"publish oversized", "POST", "/v1/topics/t1/messages", `{"messages":[{"value":"` + strings.Repeat("x", 9<<20) + `"}]}`, 413, "", "over the limit"},
		{"create existing topic", "POST", "/v1/topics", `{"name":"t1","partitions":3}`, 409, "", "already exists"},
		{"create bad partitions", "POST", "/v1/topics", `{"name":"t2","partitions":-3}`, 400, "partitions", "between"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := n.do(t, c.method, c.path, c.body)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, body)
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
	_, after := n.do(t, "GET", "/v1/handlers", "")
	var hb, ha api.HandlerList
	_ = json.Unmarshal(before, &hb)
	_ = json.Unmarshal(after, &ha)
	if len(ha.Handlers) != 1 || ha.Handlers[0].Version != hb.Handlers[0].Version || ha.Handlers[0].Spec.HTTP.URL != "http://127.0.0.1:1/x" {
		t.Fatalf("bad input changed the registry: before %s after %s", before, after)
	}
	code, body := n.do(t, "GET", "/v1/topics", "")
	if code != 200 || strings.Contains(string(body), `"t2"`) || !strings.Contains(string(body), `"t1"`) {
		t.Fatalf("topics after bad input: %s", body)
	}
	// Spec parsing is shared with the CLI: check YAML too.
	if _, err := handlers.Parse([]byte("name: x\ntopic: t\nhttp:\n  url: http://h/\n  timout: 1s\n")); err == nil || err.Error() != "http.timout: unknown field" {
		t.Fatalf("yaml unknown field: %v", err)
	}
}

func TestRegistrySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	opts := []sluice.Option{sluice.WithDataDir(dir), sluice.WithKafkaAddr("127.0.0.1:0"), sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger())}
	app, _ := sluice.New(opts...)
	n := runNode(t, app)
	if code, body := n.do(t, "PUT", "/v1/handlers/durable", `{"name":"durable","topic":"dt","http":{"url":"http://127.0.0.1:1/"},"concurrency":7}`); code != 201 {
		t.Fatalf("apply: %d %s", code, body)
	}
	if code, _ := n.do(t, "POST", "/v1/handlers/durable/pause", ""); code != 200 {
		t.Fatal("pause failed")
	}
	n.stop()
	app2, _ := sluice.New(opts...)
	n2 := runNode(t, app2)
	code, body := n2.do(t, "GET", "/v1/handlers/durable", "")
	var h api.Handler
	if code != 200 || json.Unmarshal(body, &h) != nil || h.Spec.Concurrency != sluice.Fixed(7) || !h.Paused {
		t.Fatalf("after restart: %d %s", code, body)
	}
}

// A record written to the registry by an older version, without the
// fields added since, is read with their defaults filled in.
func TestRegistryRecordsFromOlderVersionsGetDefaults(t *testing.T) {
	n := startNode(t)
	ep := newEndpoint(t)
	tc := testkit.Topics(t, n.app.Brokers())
	old := fmt.Sprintf(`{"spec":{"name":"legacy","topic":"old-topic","http":{"url":%q},"ordering":"key","concurrency":16,"startFrom":"earliest"},"paused":false}`, ep.URL)
	if _, err := tc.Produce(context.Background(), "__sluice_handlers", []topics.Record{{Key: []byte("legacy"), Value: []byte(old), Partition: 0}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { code, _ := n.do(t, "GET", "/v1/handlers/legacy", ""); return code == 200 }, "the legacy handler")
	h := n.handler(t, "legacy")
	if h.Spec.MaxInFlightBytes != 64<<20 || h.Spec.Retry == nil || h.Spec.Retry.MaxAttempts != 5 || h.Spec.DeadLetter.Topic != "legacy.dlq" {
		t.Fatalf("legacy spec not normalized: %+v", h.Spec)
	}
	n.publishN(t, "old-topic", "x", 0, 40, 40)
	testkit.Eventually(t, 20*time.Second, func() bool { return ep.distinct() == 40 }, "40 deliveries")
}

// A redirect is an answer, not a detour: it fails the message (and is not
// retried), rather than turning the POST into a GET that looks like success.
func TestRedirectIsAPermanentFailure(t *testing.T) {
	n := startNode(t)
	var gets atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gets.Add(1) }))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusFound)
	}))
	defer redirect.Close()
	n.apply(t, fmt.Sprintf(`{"name":"moved","topic":"moved","http":{"url":%q}}`, redirect.URL))
	n.publishN(t, "moved", "m", 0, 1, 1)
	testkit.Eventually(t, 20*time.Second, func() bool { return n.dlq(t, "moved", "").Total == 1 }, "a dead letter")
	if e := n.dlq(t, "moved", "").Entries[0]; e.Status != 302 || e.Attempts != 1 {
		t.Fatalf("entry %+v, want status 302 after 1 attempt", e)
	}
	if gets.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}
