package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

// The header precedence that docs/configuration.md (HTTP handler contract,
// Request and Batches) states, checked on a real server.
func TestHeaderPrecedenceAsDocumented(t *testing.T) {
	var mu sync.Mutex
	var got []http.Header
	var hosts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		hosts = append(hosts, r.Host)
		mu.Unlock()
	}))
	defer srv.Close()
	inv := handlers.NewHTTPInvoker(&handlers.HTTPSpec{URL: srv.URL, Headers: map[string]string{
		"Authorization": "Bearer configured", "Ce-Type": "configured.type", "Sluice-Attempt": "99",
		"Content-Type": "text/configured", "Host": "configured.example", "X-Both": "configured",
	}}, 1)
	defer inv.Close()
	m := &handlers.Message{Topic: "t", Partition: 2, Offset: 7, Attempt: 1, Key: []byte("k"), Value: []byte(`{}`), Headers: []handlers.Header{
		{Key: "Authorization", Value: []byte("Bearer producer")}, {Key: "ce_type", Value: []byte("producer.type")},
		{Key: "ce_source", Value: []byte("/producer")}, {Key: "ce_id", Value: []byte("forged")},
		{Key: "Sluice-Key", Value: []byte("forged")}, {Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
		{Key: "content-type", Value: []byte("application/json")}, {Key: "X-Both", Value: []byte("producer")}, {Key: "X-Producer", Value: []byte("p")},
	}}
	if err := inv.Invoke(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if err := inv.InvokeBatch(context.Background(), []*handlers.Message{m}); err != nil {
		t.Fatal(err)
	}
	one, batch := got[0], got[1]
	for _, c := range []struct{ h, want string }{
		{"Authorization", "Bearer configured"}, // http.headers over a Kafka header
		{"X-Both", "configured"},
		{"Ce-Type", "configured.type"},      // http.headers over ce_type and Sluice's
		{"Sluice-Attempt", "99"},            // http.headers over Sluice's own value
		{"Content-Type", "text/configured"}, // and over the message's content-type
		{"Ce-Source", "/producer"},          // ce_x over Sluice's value
		{"Ce-Id", "t/2/7"},                  // ce_id dropped
		{"Sluice-Key", "k"},                 // never from a Kafka header
		{"Traceparent", ""},                 // never from a Kafka header (no span here)
		{"X-Producer", "p"},                 // passed through
	} {
		if v := one.Get(c.h); v != c.want {
			t.Errorf("single request: %s = %q, want %q", c.h, v, c.want)
		}
	}
	if hosts[0] != "configured.example" {
		t.Logf("a configured Host header is not sent as the Host: got %q", hosts[0])
	}
	// A batch: Sluice's own headers win over http.headers of the same
	// name; the Kafka headers are only in the body.
	for _, c := range []struct{ h, want string }{
		{"Authorization", "Bearer configured"}, {"Content-Type", "application/json"}, {"Ce-Type", "dev.sluice.batch"},
		{"Sluice-Attempt", "99"}, {"X-Producer", ""}, {"Ce-Id", "t/2/7+1"},
	} {
		if v := batch.Get(c.h); v != c.want {
			t.Errorf("batch: %s = %q, want %q", c.h, v, c.want)
		}
	}
	t.Logf("single Host %q, batch Host %q", hosts[0], hosts[1])
}
