package handlers_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

func TestParseAppliesDefaults(t *testing.T) {
	specs, err := handlers.Parse([]byte(`
name: orders-mail
topic: orders
http:
  url: https://mail.internal/hooks/order
---
name: billing
topic: orders
go: {}
ordering: partition
concurrency: 3
retry:
  maxAttempts: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 {
		t.Fatalf("%d specs", len(specs))
	}
	a, b := specs[0], specs[1]
	if a.Ordering != handlers.OrderingKey || a.Concurrency != handlers.Adaptive(handlers.DefaultConcurrencyMin, handlers.DefaultConcurrencyMax) || a.StartFrom != handlers.StartEarliest ||
		a.InvocationTimeout() != 30*time.Second || a.Retry.MaxAttempts != 5 || a.Breaker.MinRequests != 20 ||
		a.DeadLetter.Topic != "orders-mail.dlq" || a.Group() != "sluice.orders-mail" {
		t.Fatalf("defaults: %+v", a)
	}
	if b.Go == nil || b.Ordering != handlers.OrderingPartition || b.Concurrency != handlers.Fixed(3) || b.Retry.MaxAttempts != 2 ||
		b.Retry.InitialBackoff.D() != 200*time.Millisecond {
		t.Fatalf("second spec: %+v", b)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	cases := []struct{ in, want string }{
		{"name: a\ntopic: t\nhttp: {url: 'http://x/', timeot: 1s}\n", "http.timeot: unknown field"},
		{"name: a\ntopic: t\nhttp: {url: 'http://x/'}\nretry: {maxAttempts: 0}\n", "retry.maxAttempts: must not be zero"},
		{"name: a\ntopic: t\nhttp: {url: 'http://x/'}\nretry: {initialBackoff: soon}\n", `retry.initialBackoff: must be a duration such as "500ms" or "30s", got "soon"`},
		{"name: a\ntopic: t\nhttp: {url: 'http://x/'}\nconcurrency: many\n", "concurrency: must be a whole number"},
		{"name: a\ntopic: t\nhttp: {url: 'http://x/'}\nconcurrency: 1.5\n", "concurrency: must be a whole number"},
		{"name: a\ntopic: t\nhttp: {url: 'http://x/', headers: [a]}\n", "http.headers: must be an object"},
		{"name: a\ntopic: t\nhttp: {url: 'mailto:x'}\n", `http.url: must be an absolute http(s) URL, got "mailto:x"`},
		{"name: A\ntopic: t\ngo: {}\n", `name: "A" must match [a-z0-9][a-z0-9-]{0,62}`},
		{"name: a\ntopic: __sluice_handlers\ngo: {}\n", `topic: "__sluice_handlers" is an internal topic`},
		{"name: a\ntopic: t\ngo: {}\nretry: {mode: topics}\n", "retry.mode: topics needs ordering: none"},
		{"name: a\ntopic: t\n  bad indent: [\n", "malformed YAML or JSON"},
		{"", "no handler spec found"},
		{"name: a\ntopic: t\ngo: {}\n---\nname: b\ntopic: t\ngo: {}\nextra: 1\n", "extra: unknown field (document 2)"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			_, err := handlers.Parse([]byte(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	_, err := handlers.Parse([]byte("name: a\ntopic: t\nhttp: {url: 'http://x/', retries: 3}\n"))
	var fe *handlers.FieldError
	if !errors.As(err, &fe) || fe.Field != "http.retries" {
		t.Fatalf("not a FieldError naming http.retries: %#v", err)
	}
}

func TestConcurrencyFixedOrAdaptive(t *testing.T) {
	specs, err := handlers.Parse([]byte("name: a\ntopic: t\ngo: {}\nconcurrency: {min: 4, max: 512}\n---\nname: b\ntopic: t\ngo: {}\nconcurrency: 8\n---\nname: c\ntopic: t\ngo: {}\nconcurrency: {max: 64}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].Concurrency != handlers.Adaptive(4, 512) || specs[1].Concurrency != handlers.Fixed(8) || specs[2].Concurrency != handlers.Adaptive(1, 64) {
		t.Fatalf("got %v, %v, %v", specs[0].Concurrency, specs[1].Concurrency, specs[2].Concurrency)
	}
	for in, want := range map[string]string{
		"{min: 10, max: 5}":    "concurrency.max: must be between concurrency.min (10) and 10000, got 5",
		"{min: 1, mx: 5}":      "concurrency.mx: unknown field",
		"{min: 2}":             "concurrency.max: is required",
		"0":                    "concurrency: must not be zero",
		"many":                 "concurrency: must be a whole number or {min, max}",
		"{min: 1, max: 99999}": "concurrency.max: must be between concurrency.min (1) and 10000, got 99999",
	} {
		_, err := handlers.Parse([]byte("name: a\ntopic: t\ngo: {}\nconcurrency: " + in + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("concurrency: %s: got %v, want %q", in, err, want)
		}
	}
}

func TestScalingDefaultsAndBounds(t *testing.T) {
	s, err := handlers.ParseOne([]byte("name: a\ntopic: t\ngo: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if sc := s.Scaling; sc.MaxAge.D() != handlers.DefaultScalingMaxAge || sc.Min() != 1 || sc.MaxNodes != 10 {
		t.Fatalf("defaults: %+v (min %d)", sc, sc.Min())
	}
	s, err = handlers.ParseOne([]byte("name: a\ntopic: t\ngo: {}\nscaling: {maxAge: 20s, minNodes: 0, maxNodes: 4}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if sc := s.Scaling; sc.MaxAge.D() != 20*time.Second || sc.Min() != 0 || sc.MaxNodes != 4 {
		t.Fatalf("set: %+v (min %d)", sc, sc.Min())
	}
	for in, want := range map[string]string{
		"{minNodes: 5, maxNodes: 2}": "scaling.minNodes: must be at most scaling.maxNodes (2), got 5",
		"{maxAge: 0s}":               "scaling.maxAge: must not be zero",
		"{maxAge: -5s}":              "scaling.maxAge: must be between 1s and 24h, got -5s",
		"{maxAge: 10ms}":             "scaling.maxAge: must be between 1s and 24h, got 10ms",
		"{maxNodes: 5000}":           "scaling.maxNodes: must be between 1 and 1000, got 5000",
		"{minNodes: -1}":             "scaling.minNodes: must not be negative, got -1",
		"{nodes: 3}":                 "scaling.nodes: unknown field",
	} {
		_, err := handlers.Parse([]byte("name: a\ntopic: t\ngo: {}\nscaling: " + in + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("scaling: %s: got %v, want %q", in, err, want)
		}
	}
}
