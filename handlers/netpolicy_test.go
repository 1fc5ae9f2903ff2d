package handlers_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

// fakeResolver answers names from a table, as a DNS server under an
// attacker's control would.
type fakeResolver map[string][]string

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	l, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(l))
	for i, s := range l {
		out[i] = netip.MustParseAddr(s)
	}
	return out, nil
}

var names = fakeResolver{
	"rebind.example":        {"169.254.169.254"},
	"mixed.example":         {"192.0.2.10", "fe80::1"},
	"public.example":        {"192.0.2.10"},
	"api.internal.example":  {"10.1.2.3"},
	"evil.internal.example": {"169.254.10.10"},
	"localhost":             {"127.0.0.1"},
}

func TestNetPolicyDefaultRefusals(t *testing.T) {
	p := handlers.DefaultNetPolicy()
	p.Resolver = names
	for _, c := range []struct{ url, rule string }{
		{"http://169.254.169.254/latest/meta-data/", "handlers.deniedNetworks: in 169.254.0.0/16"},
		{"http://169.254.1.1:8080/", "handlers.deniedNetworks: in 169.254.0.0/16"},
		{"http://[fe80::1]/", "handlers.deniedNetworks: in fe80::/10"},
		{"http://[fe80::1%25eth0]:9000/", "handlers.deniedNetworks: in fe80::/10"},
		{"http://[::ffff:169.254.169.254]/", "handlers.deniedNetworks: in 169.254.0.0/16"},
		{"http://[fd00:ec2::254]/", "handlers.deniedNetworks: in fd00:ec2::254/128"},
		{"http://100.100.100.200/latest/meta-data/", "handlers.deniedNetworks: in 100.100.100.200/32"},
		{"http://metadata.google.internal/computeMetadata/v1/", "handlers.deniedHosts: matches metadata.google.internal"},
		{"http://METADATA.google.internal./", "handlers.deniedHosts: matches metadata.google.internal"},
		{"https://rebind.example/hook", "rebind.example (169.254.169.254) is refused by handlers.deniedNetworks"},
		{"https://mixed.example/hook", "mixed.example (fe80::1) is refused by handlers.deniedNetworks"},
	} {
		err := p.CheckURL(context.Background(), "http.url", c.url)
		var fe *handlers.FieldError
		if !errors.As(err, &fe) || fe.Field != "http.url" || !strings.Contains(fe.Msg, c.rule) {
			t.Errorf("%s: got %v, want a refusal of http.url naming %q", c.url, err, c.rule)
		}
	}
	for _, u := range []string{
		"http://127.0.0.1:8080/", "http://localhost:9000/x", "http://[::1]/", "http://10.0.0.5/", "http://192.168.1.2/",
		"https://public.example/", "http://unresolvable.example/", "http://172.16.0.1/",
	} {
		if err := p.CheckURL(context.Background(), "http.url", u); err != nil {
			t.Errorf("%s: refused by default: %v", u, err)
		}
	}
}

func TestNetPolicyAllowList(t *testing.T) {
	p, err := handlers.NewNetPolicy([]string{"*.internal.example"}, []string{"127.0.0.1", "192.168.0.0/16"}, nil, handlers.DefaultDeniedNetworks)
	if err != nil {
		t.Fatal(err)
	}
	p.Resolver = names
	for _, u := range []string{"http://api.internal.example/", "http://127.0.0.1:80/", "http://192.168.4.4/", "http://localhost/"} {
		if err := p.CheckURL(context.Background(), "http.url", u); err != nil {
			t.Errorf("%s: refused: %v", u, err)
		}
	}
	for _, c := range []struct{ url, want string }{
		{"http://10.0.0.1/", "10.0.0.1 is refused by handlers.allowedHosts/allowedNetworks"},
		{"http://public.example/", "public.example (192.0.2.10) is refused by handlers.allowedHosts/allowedNetworks"},
		{"http://internal.example/", "internal.example is refused by handlers.allowedHosts/allowedNetworks: the host matches no allowed host and cannot be resolved"},
		// An allowed name is still held to the deny list.
		{"http://evil.internal.example/", "evil.internal.example (169.254.10.10) is refused by handlers.deniedNetworks"},
	} {
		err := p.CheckURL(context.Background(), "http.url", c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "http.url: ") {
			t.Errorf("%s: got %v, want %q", c.url, err, c.want)
		}
	}
}

func TestNewNetPolicyNamesTheBadEntry(t *testing.T) {
	for _, c := range [][4][]string{
		{nil, {"10.0.0.0/33"}, nil, nil},
		{nil, nil, nil, {"169.254.0.0/16", "nope"}},
		{{"a/b"}, nil, nil, nil},
		{nil, nil, {"*"}, nil},
	} {
		if _, err := handlers.NewNetPolicy(c[0], c[1], c[2], c[3]); err == nil {
			t.Errorf("%v accepted", c)
		} else {
			t.Log(err)
		}
	}
}

// listenOn starts a real HTTP server on addr (127.0.0.2:0 is another
// loopback address on Linux).
func listenOn(t *testing.T, addr string, h http.Handler) *httptest.Server {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// The dial-time check: whatever the URL said when it was applied, the
// invoker connects to no refused address: not through a redirect, not
// through a name that now resolves to a refused address (DNS rebinding,
// or a handler applied under another configuration).
func TestInvokerRefusesDeniedAddressesAtDialTime(t *testing.T) {
	var deniedHits atomic.Int64
	denied := listenOn(t, "127.0.0.2:0", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { deniedHits.Add(1) }))
	var allowedHits atomic.Int64
	allowed := listenOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allowedHits.Add(1)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, denied.URL+"/", http.StatusTemporaryRedirect)
		}
	}))
	// Allow only 127.0.0.1; the link-local defaults stay denied.
	p, err := handlers.NewNetPolicy(nil, []string{"127.0.0.1/32"}, nil, handlers.DefaultDeniedNetworks)
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(url string) error {
		inv := handlers.NewHTTPInvoker(&handlers.HTTPSpec{URL: url}, 4, handlers.WithNetPolicy(p))
		defer inv.Close()
		return inv.Invoke(context.Background(), &handlers.Message{Topic: "t", Value: []byte("{}")})
	}

	// The allowed server works.
	if err := invoke(allowed.URL + "/"); err != nil {
		t.Fatalf("allowed server: %v", err)
	}
	// Its redirect to the denied address is an answer, not followed.
	err = invoke(allowed.URL + "/redirect")
	var he *handlers.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("redirect: got %v, want the 307 as the outcome", err)
	}
	// The denied address itself, dialled: refused before connecting,
	// permanently (dead-lettered, not an outage).
	for _, u := range []string{denied.URL + "/", denied.URL + "/again"} {
		err = invoke(u)
		var re *handlers.RefusedError
		if !errors.As(err, &re) || !handlers.IsPermanent(err) || !strings.Contains(err.Error(), "handlers.allowedHosts/allowedNetworks") {
			t.Fatalf("%s: got %v, want a permanent refusal naming the rule", u, err)
		}
		t.Logf("%s: %v", u, err)
	}
	if deniedHits.Load() != 0 {
		t.Fatalf("the denied server got %d requests", deniedHits.Load())
	}
	if allowedHits.Load() != 2 {
		t.Fatalf("the allowed server got %d requests, want 2", allowedHits.Load())
	}

	// A name that resolves to a denied network at dial time: localhost
	// under a policy that denies loopback.
	lp, err := handlers.NewNetPolicy(nil, nil, nil, []string{"127.0.0.0/8", "::1/128"})
	if err != nil {
		t.Fatal(err)
	}
	inv := handlers.NewHTTPInvoker(&handlers.HTTPSpec{URL: strings.Replace(allowed.URL, "127.0.0.1", "localhost", 1)}, 4, handlers.WithNetPolicy(lp))
	defer inv.Close()
	err = inv.Invoke(context.Background(), &handlers.Message{Topic: "t", Value: []byte("{}")})
	if !handlers.IsPermanent(err) || !strings.Contains(err.Error(), "is refused by handlers.deniedNetworks: in 127.0.0.0/8") {
		t.Fatalf("localhost under a loopback deny: got %v", err)
	}
	// The batch invoker too.
	err = inv.InvokeBatch(context.Background(), []*handlers.Message{{Topic: "t", Value: []byte("{}")}})
	if !handlers.IsPermanent(err) || !strings.Contains(err.Error(), "handlers.deniedNetworks") {
		t.Fatalf("batch under a loopback deny: got %v", err)
	}
	if allowedHits.Load() != 2 {
		t.Fatalf("the server got %d requests, want still 2", allowedHits.Load())
	}
}
