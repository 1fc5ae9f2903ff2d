package sluice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

// By default a handler may not target link-local or cloud metadata
// addresses (issue 11, SSRF): PUT /v1/handlers answers 400 naming http.url
// and the rule, and registers nothing. A handler on 127.0.0.1 still works.
func TestHandlerURLsRefusedByDefault(t *testing.T) {
	n := startNode(t)
	for _, c := range []struct{ url, rule string }{
		{"http://169.254.169.254/latest/meta-data/", "handlers.deniedNetworks: in 169.254.0.0/16"},
		{"http://[fe80::1]:8080/", "handlers.deniedNetworks: in fe80::/10"},
		{"http://[fd00:ec2::254]/", "handlers.deniedNetworks: in fd00:ec2::254/128"},
		{"http://100.100.100.200/", "handlers.deniedNetworks: in 100.100.100.200/32"},
		{"http://[::ffff:a9fe:a9fe]/", "handlers.deniedNetworks: in 169.254.0.0/16"},
		{"http://metadata.google.internal/computeMetadata/v1/", "handlers.deniedHosts: matches metadata.google.internal"},
	} {
		code, body := n.do(t, "PUT", "/v1/handlers/meta", fmt.Sprintf(`{"name":"meta","topic":"meta","http":{"url":%q}}`, c.url))
		var e api.Error
		_ = json.Unmarshal(body, &e)
		if code != 400 || e.Field != "http.url" || !strings.Contains(e.Error, c.rule) {
			t.Errorf("%s: got %d %s, want 400 naming http.url and %q", c.url, code, body, c.rule)
		}
	}
	if code, body := n.do(t, "GET", "/v1/handlers/meta", ""); code != 404 {
		t.Fatalf("a refused spec was registered: %d %s", code, body)
	}
	ep := newEndpoint(t) // 127.0.0.1
	n.apply(t, fmt.Sprintf(`{"name":"local","topic":"local","http":{"url":%q}}`, ep.URL))
	n.publishN(t, "local", "m", 0, 20, 20)
	testkit.Eventually(t, 30*time.Second, func() bool { return ep.distinct() == 20 }, "20 deliveries to 127.0.0.1")
}

// With an allow list, only what it names is accepted; the deny list still
// applies to it.
func TestHandlerURLAllowList(t *testing.T) {
	n := startNode(t, sluice.WithConfig(sluice.Config{Handlers: sluice.HandlersConfig{
		AllowedHosts: []string{"hooks.internal.example"}, AllowedNetworks: []string{"127.0.0.1/32"},
	}}))
	for _, u := range []string{"http://10.0.0.1/", "http://192.168.1.1:8080/", "http://[::1]/", "http://169.254.169.254/"} {
		code, body := n.do(t, "PUT", "/v1/handlers/out", fmt.Sprintf(`{"name":"out","topic":"out","http":{"url":%q}}`, u))
		var e api.Error
		_ = json.Unmarshal(body, &e)
		if code != 400 || e.Field != "http.url" || !strings.Contains(e.Error, "is refused by handlers.") {
			t.Errorf("%s: got %d %s, want 400 naming http.url", u, code, body)
		}
	}
	ep := newEndpoint(t)
	n.apply(t, fmt.Sprintf(`{"name":"in","topic":"in","http":{"url":%q}}`, ep.URL))
	n.publishN(t, "in", "m", 0, 5, 5)
	testkit.Eventually(t, 30*time.Second, func() bool { return ep.distinct() == 5 }, "5 deliveries to the allowed network")
}

// A handler registered before the configuration denied its address (here
// written straight into the registry topic) never reaches it: each
// connection is refused at dial time, the messages are dead-lettered with
// the rule as the reason, the breaker stays closed, and the status says
// why.
func TestRefusedDialIsDeadLetteredNotAnOutage(t *testing.T) {
	n := startNode(t, sluice.WithConfig(sluice.Config{Handlers: sluice.HandlersConfig{
		DeniedNetworks: []string{"127.0.0.0/8", "::1/128"},
	}}))
	ep := newEndpoint(t)
	url := strings.Replace(ep.URL, "127.0.0.1", "localhost", 1) // a name: checked once resolved
	code, body := n.do(t, "PUT", "/v1/handlers/old", fmt.Sprintf(`{"name":"old","topic":"old","http":{"url":%q}}`, url))
	if code != 400 || !strings.Contains(string(body), "handlers.deniedNetworks") {
		t.Fatalf("apply: got %d %s, want 400", code, body)
	}
	tc := testkit.Topics(t, n.app.Brokers())
	spec := fmt.Sprintf(`{"name":"old","topic":"old","http":{"url":%q},"retry":{"maxAttempts":5,"initialBackoff":"10ms"},"breaker":{"minRequests":2,"failureRatio":0.5}}`, url)
	if _, err := tc.Produce(context.Background(), "__sluice_handlers", []topics.Record{{Key: []byte("old"), Value: []byte(`{"spec":` + spec + `,"paused":false}`), Partition: 0}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { code, _ := n.do(t, "GET", "/v1/handlers/old", ""); return code == 200 }, "the handler registered")
	n.publishN(t, "old", "m", 0, 10, 10)
	testkit.Eventually(t, 60*time.Second, func() bool { return n.dlq(t, "old", "").Total == 10 }, "10 dead letters")
	p := n.dlq(t, "old", "")
	for _, e := range p.Entries {
		if e.Attempts != 1 || !strings.Contains(e.Error, "is refused by handlers.deniedNetworks: in 127.0.0.0/8") {
			t.Fatalf("dead letter %+v: want 1 attempt and the rule as the error", e)
		}
	}
	h := n.handler(t, "old")
	if h.Status.Breaker.Opened != 0 {
		t.Fatalf("the breaker opened %d times on refused dials", h.Status.Breaker.Opened)
	}
	if !strings.Contains(h.Status.LastError, "http.url: localhost (127.0.0.1) is refused by handlers.deniedNetworks") {
		t.Fatalf("status lastError %q does not say why", h.Status.LastError)
	}
	if ep.count.Load() != 0 {
		t.Fatalf("the denied endpoint got %d requests", ep.count.Load())
	}
	t.Logf("dead letter: %s; status: %s", p.Entries[0].Error, h.Status.LastError)
}
