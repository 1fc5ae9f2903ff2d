package handlers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// Behind a proxy the invoker dials the proxy, never the destination: the
// destination is checked before the proxy is used. (The proxy is set on
// the transport here: http.ProxyFromEnvironment reads the environment once
// per process.)
func TestInvokerChecksTheDestinationBehindAProxy(t *testing.T) {
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { proxied.Add(1) }))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	p := DefaultNetPolicy()
	for _, c := range []struct {
		url     string
		refused bool
	}{
		{"http://169.254.169.254/latest/meta-data/", true},
		{"http://[fe80::1]:8080/", true},
		{"http://metadata.google.internal/", true},
		{"http://192.0.2.1/hook", false}, // allowed: the proxy gets it
	} {
		inv := NewHTTPInvoker(&HTTPSpec{URL: c.url}, 1, WithNetPolicy(p))
		inv.client.Transport.(*http.Transport).Proxy = p.proxy(http.ProxyURL(pu))
		before := proxied.Load()
		err := inv.Invoke(context.Background(), &Message{Topic: "t", Value: []byte("{}")})
		inv.Close()
		if c.refused {
			if !IsPermanent(err) || !strings.Contains(err.Error(), "is refused by handlers.denied") {
				t.Fatalf("%s: got %v, want a permanent refusal", c.url, err)
			}
			if proxied.Load() != before {
				t.Fatalf("%s: the proxy got the request", c.url)
			}
			continue
		}
		if err != nil || proxied.Load() != before+1 {
			t.Fatalf("%s: got %v and %d proxied requests, want it through the proxy", c.url, err, proxied.Load()-before)
		}
	}
}
