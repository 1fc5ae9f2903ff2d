package sluice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/cli"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

// A handler may not dead-letter into Sluice's own topics: a dead letter in
// __sluice_handlers would be read back as a handler (issue 11, finding 1).
func TestSpecMayNotWriteIntoInternalTopics(t *testing.T) {
	n := startNode(t)
	for _, dl := range []string{"__sluice_handlers", "__sluice_dlq_state", "__sluice.inj.replay"} {
		t.Run(dl, func(t *testing.T) {
			spec := fmt.Sprintf(`{"name":"inj","topic":"t1","http":{"url":"http://127.0.0.1:1/"},"deadLetter":{"topic":%q}}`, dl)
			code, body := n.do(t, "PUT", "/v1/handlers/inj", spec)
			var e api.Error
			_ = json.Unmarshal(body, &e)
			if code != 400 || e.Field != "deadLetter.topic" || !strings.Contains(e.Error, "internal topic") {
				t.Fatalf("got %d %s, want 400 naming deadLetter.topic", code, body)
			}
		})
	}
	if code, body := n.do(t, "GET", "/v1/handlers/inj", ""); code != 404 {
		t.Fatalf("a refused spec was registered: %d %s", code, body)
	}
	if code, body := n.do(t, "POST", "/v1/topics/__sluice_handlers/messages", `{"messages":[{"key":"x","value":"{}"}]}`); code != 400 {
		t.Fatalf("publish into the registry: %d %s", code, body)
	}
}

// A record written straight into the registry topic is held to the same
// rules as the API: an invalid spec never runs, is logged and counted.
func TestInvalidRegistryRecordNeverRuns(t *testing.T) {
	n := startNode(t)
	bad := newEndpoint(t)
	good := newEndpoint(t)
	tc := testkit.Topics(t, n.app.Brokers())
	rec := func(name, spec string) topics.Record {
		return topics.Record{Key: []byte(name), Value: []byte(`{"spec":` + spec + `,"paused":false}`), Partition: 0}
	}
	recs := []topics.Record{
		// Dead-letters into the registry itself.
		rec("evil", fmt.Sprintf(`{"name":"evil","topic":"shared","http":{"url":%q},"deadLetter":{"topic":"__sluice_handlers"}}`, bad.URL)),
		// Consumes the dead-letter states.
		rec("evil2", fmt.Sprintf(`{"name":"evil2","topic":"__sluice_dlq_state","http":{"url":%q}}`, bad.URL)),
		// Not JSON at all.
		{Key: []byte("evil3"), Value: []byte("not json"), Partition: 0},
		// Then a valid one, to know the node has read past the others.
		rec("fine", fmt.Sprintf(`{"name":"fine","topic":"shared","http":{"url":%q}}`, good.URL)),
	}
	if _, err := tc.Produce(context.Background(), "__sluice_handlers", recs); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { code, _ := n.do(t, "GET", "/v1/handlers/fine", ""); return code == 200 }, "the valid handler")
	for _, name := range []string{"evil", "evil2", "evil3"} {
		if code, body := n.do(t, "GET", "/v1/handlers/"+name, ""); code != 404 {
			t.Fatalf("invalid record %s was registered: %d %s", name, code, body)
		}
	}
	n.publishN(t, "shared", "m", 0, 30, 30)
	testkit.Eventually(t, 30*time.Second, func() bool { return good.distinct() == 30 }, "30 deliveries to the valid handler")
	if got := bad.count.Load(); got != 0 {
		t.Fatalf("the invalid handlers were invoked %d times", got)
	}
	var hl api.HandlerList
	_, body := n.do(t, "GET", "/v1/handlers", "")
	if err := json.Unmarshal(body, &hl); err != nil || len(hl.Handlers) != 1 {
		t.Fatalf("handlers: %s", body)
	}
	v, ok := metricValue(scrape(t, n.base), "sluice_state_invalid_records_total", map[string]string{"messaging_destination_name": "__sluice_handlers"})
	if !ok || v != 3 {
		t.Fatalf("invalid registry records metric = %v (found %v), want 3", v, ok)
	}
}

// A dead-letter state record that is not one of Sluice's does not change
// the entry it names.
func TestInvalidDeadLetterStateRecordIsNotApplied(t *testing.T) {
	n := startNode(t)
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 500, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"fails","topic":"ft","http":{"url":%q},"retry":{"maxAttempts":1}}`, ep.URL))
	n.publishN(t, "ft", "x", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "fails", "").Total == 1 }, "one dead letter")
	id := n.dlq(t, "fails", "").Entries[0].ID
	tc := testkit.Topics(t, n.app.Brokers())
	recs := []topics.Record{
		{Key: []byte("fails/" + id), Value: []byte(`[1,2,3]`), Partition: 0},                                        // not a state
		{Key: []byte("fails/" + id), Value: []byte(`{"state":"discarded"}`), Partition: 0},                          // no time
		{Key: []byte("fails/" + id), Value: []byte(`{"state":"gone","at":"2026-01-01T00:00:00Z"}`), Partition: 0},   // unknown state
		{Key: []byte("fails/x-y"), Value: []byte(`{"state":"dead","at":"2026-01-01T00:00:00Z"}`), Partition: 0},     // bad id
		{Key: []byte("other/0-0"), Value: []byte(`{"state":"replayed","at":"2026-01-01T00:00:00Z"}`), Partition: 0}, // valid, a marker
	}
	if _, err := tc.Produce(context.Background(), "__sluice_dlq_state", recs); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		v, _ := metricValue(scrape(t, n.base), "sluice_state_invalid_records_total", map[string]string{"messaging_destination_name": "__sluice_dlq_state"})
		return v == 4
	}, "4 invalid state records counted")
	p := n.dlq(t, "fails", "")
	if p.Total != 1 || p.Entries[0].State != "dead" {
		t.Fatalf("entry after invalid state records: %+v", p)
	}
}

// A publish request is bounded in messages as well as bytes: 2.5 million
// empty messages fit in 7.5 MB and once took a node from 40 MiB to 1.4 GiB
// (issue 11, finding 2). Past MaxPublishMessages it is 413, and nothing is
// published.
func TestPublishIsBoundedInMessages(t *testing.T) {
	n := startNode(t)
	var b strings.Builder
	b.WriteString(`{"messages":[`)
	for i := range 2_500_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("{}")
	}
	b.WriteString("]}")
	if b.Len() > 8<<20 {
		t.Fatalf("test body is %d bytes: over the byte limit, it would not test the message cap", b.Len())
	}
	code, body := n.do(t, "POST", "/v1/topics/bounded/messages", b.String())
	var e api.Error
	_ = json.Unmarshal(body, &e)
	if code != 413 || !strings.Contains(e.Error, fmt.Sprintf("at most %d messages", api.MaxPublishMessages)) {
		t.Fatalf("2.5M messages: got %d %s, want 413 naming the cap", code, body)
	}
	// At the cap it is accepted, and every message is published.
	msgs := strings.TrimSuffix(strings.Repeat(`{"value":"v"},`, api.MaxPublishMessages), ",")
	code, body = n.do(t, "POST", "/v1/topics/bounded/messages", `{"messages":[`+msgs+`]}`)
	var pr api.PublishResponse
	if code != 200 || json.Unmarshal(body, &pr) != nil || len(pr.Results) != api.MaxPublishMessages {
		t.Fatalf("%d messages: got %d, %d results", api.MaxPublishMessages, code, len(pr.Results))
	}
	// One over the cap: 413 again, and the topic still holds exactly the cap.
	code, _ = n.do(t, "POST", "/v1/topics/bounded/messages", `{"messages":[`+msgs+`,{}]}`)
	if code != 413 {
		t.Fatalf("%d messages: got %d, want 413", api.MaxPublishMessages+1, code)
	}
	tc := testkit.Topics(t, n.app.Brokers())
	parts, err := tc.Partitions(context.Background(), "bounded")
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := tc.Offsets(context.Background(), "bounded", parts)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, r := range ranges {
		total += r.End - r.Start
	}
	if total != api.MaxPublishMessages {
		t.Fatalf("topic holds %d messages, want %d", total, api.MaxPublishMessages)
	}
}

// JSON that is not valid UTF-8 is refused, not silently repaired with
// U+FFFD (issue 11, finding 6).
func TestPublishRefusesInvalidUTF8(t *testing.T) {
	n := startNode(t)
	cases := []struct{ name, body, field, msg string }{
		{"raw byte in value", "{\"messages\":[{\"value\":\"a\xffb\"}]}", "", "not valid UTF-8"},
		{"raw byte in key", "{\"messages\":[{\"key\":\"\xc3\",\"value\":\"x\"}]}", "", "not valid UTF-8"},
		{"lone surrogate in value", `{"messages":[{"value":"ok"},{"value":"a\ud800b"}]}`, "messages[1]", "lone surrogate"},
		{"lone surrogate in header", `{"messages":[{"value":"ok","headers":{"h":"\udfff"}}]}`, "messages[0]", "lone surrogate"},
		{"unknown field named with its message", `{"messages":[{"value":"ok"},{"vaule":"x"}]}`, "messages[1].vaule", "unknown field"},
		{"unknown top-level field", `{"messages":[{"value":"ok"}],"extra":1}`, "extra", "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := n.do(t, "POST", "/v1/topics/utf/messages", c.body)
			var e api.Error
			_ = json.Unmarshal(body, &e)
			if code != 400 || e.Field != c.field || !strings.Contains(e.Error, c.msg) {
				t.Fatalf("got %d %s, want 400 field %q containing %q", code, body, c.field, c.msg)
			}
		})
	}
	// A real U+FFFD, raw or escaped, is a character like any other.
	for _, v := range []string{`"\ufffd"`, "\"\uFFFD\""} {
		if code, body := n.do(t, "POST", "/v1/topics/utf/messages", `{"messages":[{"value":`+v+`}]}`); code != 200 {
			t.Fatalf("value %s: %d %s", v, code, body)
		}
	}
}

// raw sends a request with exactly the given headers (Host included).
func (n *node) raw(t *testing.T, method, path, body string, hdr map[string]string) (int, api.Error) {
	t.Helper()
	req, err := http.NewRequest(method, n.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

// Any web page the operator opens must not be able to drive the API: a
// cross-site text/plain POST purged the dead-letter queue, a form post
// paused a handler, and Host: attacker.example was served (issue 11,
// finding 3). Each is refused, and nothing changes.
func TestBrowserCrossSiteRequestsAreRefused(t *testing.T) {
	n := startNode(t, sluice.WithConfig(sluice.Config{API: sluice.APIConfig{AllowedHosts: []string{"sluice.example.com", "*.ops.example"}}}))
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 500, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"victim","topic":"vt","http":{"url":%q},"retry":{"maxAttempts":1}}`, ep.URL))
	n.publishN(t, "vt", "x", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "victim", "").Total == 1 }, "one dead letter")
	own := n.base // http://127.0.0.1:port
	json := "application/json"
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		msg                      string
	}{
		{"cross-site text/plain purge", "POST", "/v1/handlers/victim/dlq/purge", `{"all":true}`,
			map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}, 403, "cross-origin"},
		{"cross-site purge even as JSON", "POST", "/v1/handlers/victim/dlq/purge", `{"all":true}`,
			map[string]string{"Origin": "https://evil.example", "Content-Type": json}, 403, "cross-origin"},
		{"cross-site read", "GET", "/v1/handlers", "", map[string]string{"Origin": "https://evil.example"}, 403, "cross-origin"},
		{"null origin", "POST", "/v1/handlers/victim/pause", "", map[string]string{"Origin": "null", "Content-Type": json}, 403, "cross-origin"},
		{"form post pause", "POST", "/v1/handlers/victim/pause", "a=b",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"},
		{"text/plain purge", "POST", "/v1/handlers/victim/dlq/purge", `{"all":true}`, map[string]string{"Content-Type": "text/plain"}, 415, "Content-Type"},
		{"no content type pause", "POST", "/v1/handlers/victim/pause", "", nil, 415, "Content-Type"},
		{"no content type delete", "DELETE", "/v1/handlers/victim", "", nil, 415, "Content-Type"},
		{"rebound host", "POST", "/v1/handlers/victim/pause", "", map[string]string{"Host": "attacker.example", "Content-Type": json}, 421, "api.allowedHosts"},
		{"rebound host read", "GET", "/v1/handlers", "", map[string]string{"Host": "attacker.example:80"}, 421, "api.allowedHosts"},
		{"rebound host dashboard", "GET", "/", "", map[string]string{"Host": "attacker.example"}, 421, "api.allowedHosts"},
		{"lookalike of an allowed host", "GET", "/v1/handlers", "", map[string]string{"Host": "sluice.example.com.evil.example"}, 421, "api.allowedHosts"},
		{"origin of an allowed host with a rebound host", "GET", "/v1/handlers", "",
			map[string]string{"Host": "attacker.example", "Origin": "http://sluice.example.com"}, 421, "api.allowedHosts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, e := n.raw(t, c.method, c.path, c.body, c.hdr)
			if code != c.status || !strings.Contains(e.Error, c.msg) {
				t.Fatalf("got %d %q, want %d containing %q", code, e.Error, c.status, c.msg)
			}
		})
	}
	if h := n.handler(t, "victim"); h.Paused {
		t.Fatal("a refused request paused the handler")
	}
	if p := n.dlq(t, "victim", ""); p.Total != 1 || p.Entries[0].State != "dead" {
		t.Fatalf("a refused request changed the dead letters: %+v", p)
	}
	// What the node's own dashboard, the CLI and the configured names send
	// is served.
	ok := []struct {
		name, method, path string
		hdr                map[string]string
	}{
		{"same origin", "GET", "/v1/handlers", map[string]string{"Origin": own}},
		{"localhost", "GET", "/v1/handlers", map[string]string{"Host": "localhost:8080"}},
		{"configured name", "GET", "/v1/handlers", map[string]string{"Host": "sluice.example.com"}},
		{"configured wildcard", "GET", "/v1/handlers", map[string]string{"Host": "node-1.ops.example:443"}},
		{"configured name and its origin", "GET", "/v1/handlers", map[string]string{"Host": "sluice.example.com", "Origin": "https://sluice.example.com"}},
		{"probe with any name", "GET", "/readyz", map[string]string{"Host": "anything.example"}},
		{"same-origin pause", "POST", "/v1/handlers/victim/pause", map[string]string{"Origin": own, "Content-Type": "application/json"}},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			if code, e := n.raw(t, c.method, c.path, "", c.hdr); code != 200 {
				t.Fatalf("got %d %q, want 200", code, e.Error)
			}
		})
	}
	if !n.handler(t, "victim").Paused {
		t.Fatal("the same-origin pause did not pause")
	}
}

// syncBuffer is a log sink safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A handler's configured header values and the password in its URL are
// write-only: the API (so the dashboard), the CLI, the logs and dead-letter
// error text show (set), and a spec applied back with (set) keeps the
// stored values (issue 11, finding 4).
func TestHandlerSecretsAreWriteOnly(t *testing.T) {
	logs := &syncBuffer{}
	n := startNode(t, sluice.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	secrets := []string{"s3cret-token", "k-12345", "hunter2"}
	noSecret := func(t *testing.T, what, s string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Fatalf("%s shows the secret %q:\n%s", what, sec, s)
			}
		}
	}
	// A handler whose URL cannot be reached: its error text names the URL.
	down := `{"name":"down","topic":"dt","http":{"url":"http://ops:hunter2@127.0.0.1:1/hook","headers":{"Authorization":"Bearer s3cret-token","X-Api-Key":"k-12345"}},"retry":{"maxAttempts":1}}`
	code, body := n.do(t, "PUT", "/v1/handlers/down", down)
	if code != 201 {
		t.Fatalf("apply: %d %s", code, body)
	}
	noSecret(t, "the PUT response", string(body))
	var h api.Handler
	if err := json.Unmarshal(body, &h); err != nil || h.Spec.HTTP.Headers["Authorization"] != "(set)" || h.Spec.HTTP.Headers["X-Api-Key"] != "(set)" ||
		h.Spec.HTTP.URL != "http://ops:(set)@127.0.0.1:1/hook" {
		t.Fatalf("PUT response spec: %s", body)
	}
	n.publishN(t, "dt", "x", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "down", "").Total == 1 }, "one dead letter")
	for _, path := range []string{"/v1/handlers", "/v1/handlers/down", "/v1/overview", "/v1/handlers/down/dlq", "/v1/handlers/down/dlq/" + n.dlq(t, "down", "").Entries[0].ID} {
		code, body := n.do(t, "GET", path, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		noSecret(t, path, string(body))
	}
	if e := n.dlq(t, "down", "").Entries[0].Error; !strings.Contains(e, "http://ops:(set)@127.0.0.1:1/hook") {
		t.Fatalf("dead-letter error text %q does not name the URL with (set)", e)
	}
	if st := n.handler(t, "down").Status; st != nil {
		noSecret(t, "the handler's status", fmt.Sprintf("%+v", *st))
	}
	// The CLI.
	for _, args := range [][]string{{"handler", "get", "down"}, {"handler", "get", "down", "-o", "json"}, {"handler", "get", "down", "-o", "yaml"}, {"handler", "list"}} {
		var out, errOut bytes.Buffer
		env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
		if rc := cli.Run(context.Background(), append(args, "--server", n.base), env); rc != 0 {
			t.Fatalf("sluice %v: exit %d: %s", args, rc, errOut.String())
		}
		noSecret(t, fmt.Sprintf("sluice %v", args), out.String()+errOut.String())
		if args[1] == "get" && !strings.Contains(out.String(), "(set)") {
			t.Fatalf("sluice %v does not show (set):\n%s", args, out.String())
		}
	}
	// A spec read back and applied again, changed elsewhere, keeps the
	// stored values: the endpoint still gets them.
	var got struct {
		sync.Mutex
		auth, key, user, pass string
	}
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Lock()
		defer got.Unlock()
		got.auth, got.key = r.Header.Get("Authorization"), r.Header.Get("X-Api-Key")
		got.user, got.pass, _ = r.BasicAuth()
	}))
	t.Cleanup(ep.Close)
	epURL := strings.Replace(ep.URL, "http://", "http://ops:hunter2@", 1)
	n.apply(t, fmt.Sprintf(`{"name":"up","topic":"ut","http":{"url":%q,"headers":{"X-Api-Key":"k-12345"}}}`, epURL))
	back := n.handler(t, "up").Spec
	if back.HTTP.Headers["X-Api-Key"] != "(set)" || !strings.Contains(back.HTTP.URL, ":(set)@") {
		t.Fatalf("read back: %+v", back.HTTP)
	}
	back.Concurrency = sluice.Fixed(3)
	spec, _ := json.Marshal(back)
	code, body = n.do(t, "PUT", "/v1/handlers/up", string(spec))
	if code != 200 {
		t.Fatalf("apply back: %d %s", code, body)
	}
	noSecret(t, "the PUT response", string(body))
	if h := n.handler(t, "up"); h.Spec.Concurrency != sluice.Fixed(3) {
		t.Fatalf("the change did not apply: %+v", h.Spec)
	}
	n.publishN(t, "ut", "y", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { got.Lock(); defer got.Unlock(); return got.key != "" }, "a delivery")
	got.Lock()
	if got.key != "k-12345" || got.user != "ops" || got.pass != "hunter2" {
		t.Fatalf("after applying back: X-Api-Key %q, basic auth %q:%q; want the stored values", got.key, got.user, got.pass)
	}
	got.Unlock()
	// (set) where nothing is stored is refused.
	for _, c := range []struct{ spec, field string }{
		{`{"name":"fresh","topic":"ft","http":{"url":"http://127.0.0.1:1/","headers":{"Authorization":"(set)"}}}`, "http.headers.Authorization"},
		{`{"name":"fresh","topic":"ft","http":{"url":"http://u:(set)@127.0.0.1:1/"}}`, "http.url"},
		{`{"name":"up","topic":"ut","http":{"url":"http://127.0.0.1:1/","headers":{"X-Other":"(set)"}}}`, "http.headers.X-Other"},
	} {
		var m map[string]any
		_ = json.Unmarshal([]byte(c.spec), &m)
		code, body := n.do(t, "PUT", "/v1/handlers/"+m["name"].(string), c.spec)
		var e api.Error
		_ = json.Unmarshal(body, &e)
		if code != 400 || e.Field != c.field || !strings.Contains(e.Error, "(set)") {
			t.Fatalf("%s: got %d %s, want 400 naming %s", c.spec, code, body, c.field)
		}
	}
	noSecret(t, "the node's log", logs.String())
}

// Every duration, size and rate in a spec has bounds; past them is a 400
// that names the field, and the registry is unchanged (issue 11, finding 6).
func TestSpecBounds(t *testing.T) {
	n := startNode(t)
	n.apply(t, `{"name":"bounded","topic":"bt","http":{"url":"http://127.0.0.1:1/"}}`)
	before := n.handler(t, "bounded").Version
	base := `"name":"bounded","topic":"bt","http":{"url":"http://127.0.0.1:1/"}`
	cases := []struct{ extra, field string }{
		{`"timeout":"1ns"`, "timeout"},
		{`"timeout":"16m"`, "timeout"},
		{`"retry":{"initialBackoff":"2562047h"}`, "retry.initialBackoff"},
		{`"retry":{"maxBackoff":"2h"}`, "retry.maxBackoff"},
		{`"retry":{"initialBackoff":"1ns"}`, "retry.initialBackoff"},
		{`"ordering":"none","retry":{"mode":"topics","delays":["10s","48h"]}`, "retry.delays[1]"},
		{`"maxInFlightBytes":9223372036854775807`, "maxInFlightBytes"},
		{`"maxInFlightBytes":1073741825`, "maxInFlightBytes"},
		{`"rateLimit":1e-300`, "rateLimit"},
		{`"rateLimit":2e6`, "rateLimit"},
		{`"breaker":{"openFor":"1000h"}`, "breaker.openFor"},
		{`"breaker":{"window":"1ns"}`, "breaker.window"},
		{`"breaker":{"minRequests":2000000}`, "breaker.minRequests"},
		{`"scaling":{"maxAge":"100h"}`, "scaling.maxAge"},
	}
	for _, c := range cases {
		t.Run(c.extra, func(t *testing.T) {
			code, body := n.do(t, "PUT", "/v1/handlers/bounded", "{"+base+","+c.extra+"}")
			var e api.Error
			_ = json.Unmarshal(body, &e)
			if code != 400 || e.Field != c.field || !strings.Contains(e.Error, "must be") {
				t.Fatalf("got %d %s, want 400 naming %s", code, body, c.field)
			}
		})
	}
	// At the bounds it is accepted.
	n.apply(t, `{"name":"bounded","topic":"bt","timeout":"1ms","http":{"url":"http://127.0.0.1:1/","timeout":"15m"},"retry":{"initialBackoff":"1h","maxBackoff":"1h"},"maxInFlightBytes":1073741824,"rateLimit":0.001,"breaker":{"openFor":"1h","window":"1ms"}}`)
	if h := n.handler(t, "bounded"); h.Version == before || h.Spec.MaxInFlightBytes != 1<<30 || h.Spec.RateLimit != 0.001 {
		t.Fatalf("the spec at the bounds was not applied: %+v", h.Spec)
	}
}

// PUT /v1/handlers/{name} takes the version it read (If-Match, or
// "version" in the body); a stale one is 409 and changes nothing. Eight
// concurrent applies over one version: exactly one wins (issue 11,
// finding 6).
func TestApplyOverAStaleVersionIsAConflict(t *testing.T) {
	n := startNode(t)
	spec := func(c int) string {
		return fmt.Sprintf(`{"name":"occ","topic":"ot","http":{"url":"http://127.0.0.1:1/"},"concurrency":%d}`, c)
	}
	put := func(t *testing.T, body string, hdr map[string]string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("PUT", n.base+"/v1/handlers/occ", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := put(t, spec(1), map[string]string{"If-Match": "5"}); code != 409 || !strings.Contains(string(body), "does not exist") {
		t.Fatalf("If-Match on a missing handler: %d %s", code, body)
	}
	n.apply(t, spec(1))
	v0 := n.handler(t, "occ").Version
	v := strconv.FormatInt(v0, 10)
	if code, body := put(t, spec(2), map[string]string{"If-Match": `"` + v + `"`}); code != 200 {
		t.Fatalf("apply over the current version: %d %s", code, body)
	}
	v1 := n.handler(t, "occ").Version
	for name, c := range map[string]struct {
		body string
		hdr  map[string]string
	}{
		"stale If-Match":     {spec(3), map[string]string{"If-Match": v}},
		"stale body version": {strings.Replace(spec(3), `{`, `{"version":`+v+`,`, 1), nil},
	} {
		code, body := put(t, c.body, c.hdr)
		if code != 409 || !strings.Contains(string(body), fmt.Sprintf("is at version %d, not version %d", v1, v0)) {
			t.Fatalf("%s: %d %s", name, code, body)
		}
	}
	if code, body := put(t, spec(3), map[string]string{"If-Match": "abc"}); code != 400 || !strings.Contains(string(body), `"field": "If-Match"`) {
		t.Fatalf("bad If-Match: %d %s", code, body)
	}
	if h := n.handler(t, "occ"); h.Version != v1 || h.Spec.Concurrency != sluice.Fixed(2) {
		t.Fatalf("a refused apply changed the handler: version %d, %+v", h.Version, h.Spec.Concurrency)
	}
	// The version a GET gives back, in the body, is the current one.
	if code, body := put(t, strings.Replace(spec(4), `{`, fmt.Sprintf(`{"version":%d,`, v1), 1), nil); code != 200 {
		t.Fatalf("body version: %d %s", code, body)
	}
	// Eight at once over the same version: one wins.
	cur := n.handler(t, "occ").Version
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = put(t, spec(10+i), map[string]string{"If-Match": strconv.FormatInt(cur, 10)})
		}()
	}
	wg.Wait()
	won, lost := 0, 0
	winner := -1
	for i, c := range codes {
		switch c {
		case 200:
			won++
			winner = i
		case 409:
			lost++
		}
	}
	if won != 1 || lost != 7 {
		t.Fatalf("eight concurrent applies: %v, want one 200 and seven 409", codes)
	}
	if h := n.handler(t, "occ"); h.Spec.Concurrency != sluice.Fixed(10+winner) {
		t.Fatalf("the registry holds %+v, not the winner's %d", h.Spec.Concurrency, 10+winner)
	}
	// The CLI shows the conflict and exits 2.
	file := t.TempDir() + "/occ.json"
	if err := os.WriteFile(file, []byte(spec(50)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	rc := cli.Run(context.Background(), []string{"handler", "apply", "-f", file, "--if-version", strconv.FormatInt(cur, 10), "--server", n.base}, env)
	if rc != 2 || !strings.Contains(errOut.String(), fmt.Sprintf("not version %d", cur)) || !strings.Contains(errOut.String(), "is at version") {
		t.Fatalf("sluice handler apply --if-version (stale): exit %d\nstdout: %s\nstderr: %s", rc, out.String(), errOut.String())
	}
	latest := n.handler(t, "occ").Version
	out.Reset()
	errOut.Reset()
	rc = cli.Run(context.Background(), []string{"handler", "apply", "-f", file, "--if-version", strconv.FormatInt(latest, 10), "--server", n.base}, env)
	if rc != 0 || n.handler(t, "occ").Spec.Concurrency != sluice.Fixed(50) {
		t.Fatalf("sluice handler apply --if-version (current): exit %d %s", rc, errOut.String())
	}
}

// An entry already replayed is not replayed again by id unless forced: a
// second replay delivers the message twice (issue 11, finding 5).
func TestReplayByIDOfAnEntryNotDeadIsAConflict(t *testing.T) {
	n := startNode(t)
	var fail atomic.Bool
	fail.Store(true)
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) {
		if fail.Load() {
			return 500, nil, 0
		}
		return 200, nil, 0
	})
	n.apply(t, fmt.Sprintf(`{"name":"twice","topic":"tt","http":{"url":%q},"retry":{"maxAttempts":1}}`, ep.URL))
	n.publishN(t, "tt", "x", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "twice", "").Total == 1 }, "one dead letter")
	id := n.dlq(t, "twice", "").Entries[0].ID
	fail.Store(false)
	replay := func(body string) (int, []byte) { return n.do(t, "POST", "/v1/handlers/twice/dlq/replay", body) }
	if code, body := replay(`{"ids":["` + id + `"]}`); code != 200 || !strings.Contains(string(body), `"replayed": 1`) {
		t.Fatalf("first replay: %d %s", code, body)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { ep.mu.Lock(); defer ep.mu.Unlock(); return ep.ok["x0"] == 1 }, "the replayed message handled")
	code, body := replay(`{"ids":["` + id + `"]}`)
	if code != 409 || !strings.Contains(string(body), "is replayed") || !strings.Contains(string(body), "force") {
		t.Fatalf("second replay: %d %s, want 409", code, body)
	}
	// The CLI says so, and exits 2.
	var out, errOut bytes.Buffer
	env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	if rc := cli.Run(context.Background(), []string{"dlq", "replay", "twice", id, "--server", n.base}, env); rc != 2 || !strings.Contains(errOut.String(), "is replayed") {
		t.Fatalf("sluice dlq replay (again): exit %d: %s", rc, errOut.String())
	}
	// Nothing more was delivered; forced, it is.
	ep.mu.Lock()
	got := ep.ok["x0"]
	ep.mu.Unlock()
	if got != 1 {
		t.Fatalf("refused replays delivered the message: %d successes", got)
	}
	if rc := cli.Run(context.Background(), []string{"dlq", "replay", "twice", id, "--force", "--server", n.base}, env); rc != 0 {
		t.Fatalf("sluice dlq replay --force: exit %d: %s", rc, errOut.String())
	}
	testkit.Eventually(t, 30*time.Second, func() bool { ep.mu.Lock(); defer ep.mu.Unlock(); return ep.ok["x0"] == 2 }, "the forced replay handled")
}
