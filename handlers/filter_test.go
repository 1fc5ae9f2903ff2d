package handlers_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

// parseFilter reads a spec with the given filter (YAML, indented under
// filter:) and returns its compiled filter.
func parseFilter(t testing.TB, filter string) (*handlers.Filter, error) {
	t.Helper()
	spec, err := handlers.ParseOne([]byte("name: f\ntopic: t\ngo: {}\nfilter:\n" + filter))
	if err != nil {
		return nil, err
	}
	return spec.Filter, nil
}

func msg(key string, value string, headers ...string) *handlers.Message {
	m := &handlers.Message{Value: []byte(value)}
	if key != "" {
		m.Key = []byte(key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		m.Headers = append(m.Headers, handlers.Header{Key: headers[i], Value: []byte(headers[i+1])})
	}
	return m
}

func TestFilterMatch(t *testing.T) {
	cases := []struct {
		name, filter string
		match, miss  []*handlers.Message
	}{
		{
			name:   "exact string in value",
			filter: "  value:\n    status: [paid, shipped]\n",
			match:  []*handlers.Message{msg("", `{"status":"paid"}`), msg("", `{"status":"shipped","x":1}`), msg("", `{"status":["new","paid"]}`)},
			miss:   []*handlers.Message{msg("", `{"status":"new"}`), msg("", `{}`), msg("", `{"status":"PAID"}`), msg("", `not json`), msg("", `["paid"]`), msg("", ``)},
		},
		{
			name:   "exact number, bool and null",
			filter: "  value:\n    n: [5]\n    ok: [true]\n    gone: [null]\n",
			match:  []*handlers.Message{msg("", `{"n":5,"ok":true,"gone":null}`), msg("", `{"n":5.0,"ok":true,"gone":null}`)},
			miss:   []*handlers.Message{msg("", `{"n":"5","ok":true,"gone":null}`), msg("", `{"n":5,"ok":false,"gone":null}`), msg("", `{"n":5,"ok":true}`), msg("", `{"n":5,"ok":true,"gone":0}`)},
		},
		{
			name:   "prefix on key",
			filter: "  key: [{prefix: eu-}]\n",
			match:  []*handlers.Message{msg("eu-1", `x`), msg("eu-", ``)},
			miss:   []*handlers.Message{msg("us-1", `{}`), msg("", `{}`), msg("e", `{}`)},
		},
		{
			name:   "anything-but values",
			filter: "  value:\n    status: [{anything-but: [cancelled, test]}]\n",
			match:  []*handlers.Message{msg("", `{"status":"paid"}`), msg("", `{"status":3}`)},
			miss:   []*handlers.Message{msg("", `{"status":"cancelled"}`), msg("", `{"status":"test"}`), msg("", `{}`)},
		},
		{
			name:   "anything-but prefix",
			filter: "  headers:\n    ce-type: [{anything-but: {prefix: internal.}}]\n",
			match:  []*handlers.Message{msg("", `x`, "ce-type", "order.created")},
			miss:   []*handlers.Message{msg("", `x`, "ce-type", "internal.ping"), msg("", `x`)},
		},
		{
			name:   "numeric range",
			filter: "  value:\n    price: [{numeric: [\">\", 0, \"<=\", 100]}]\n",
			match:  []*handlers.Message{msg("", `{"price":0.01}`), msg("", `{"price":100}`), msg("", `{"price":[500, 50]}`)},
			miss:   []*handlers.Message{msg("", `{"price":0}`), msg("", `{"price":100.5}`), msg("", `{"price":"50"}`), msg("", `{}`)},
		},
		{
			name:   "numeric equality on a header",
			filter: "  headers:\n    version: [{numeric: [\"=\", 2]}]\n",
			match:  []*handlers.Message{msg("", ``, "version", "2"), msg("", ``, "version", "2.0")},
			miss:   []*handlers.Message{msg("", ``, "version", "3"), msg("", ``, "version", "two"), msg("", ``)},
		},
		{
			name:   "exists",
			filter: "  value:\n    id: [{exists: true}]\n    customer:\n      coupon: [{exists: false}]\n",
			match:  []*handlers.Message{msg("", `{"id":1}`), msg("", `{"id":null,"customer":{"name":"a"}}`), msg("", `{"id":"x","customer":"flat"}`)},
			miss:   []*handlers.Message{msg("", `{}`), msg("", `{"id":1,"customer":{"coupon":"X"}}`)},
		},
		{
			name:   "nested object and arrays of objects",
			filter: "  value:\n    customer:\n      tier: [gold]\n",
			match:  []*handlers.Message{msg("", `{"customer":{"tier":"gold"}}`), msg("", `{"customer":[{"tier":"silver"},{"tier":"gold"}]}`)},
			miss:   []*handlers.Message{msg("", `{"customer":{"tier":"silver"}}`), msg("", `{"customer":"gold"}`), msg("", `{}`)},
		},
		{
			name:   "key, headers and value all must match",
			filter: "  key: [a]\n  headers:\n    ce-type: [order.paid]\n  value:\n    total: [{numeric: [\">=\", 10]}]\n",
			match:  []*handlers.Message{msg("a", `{"total":10}`, "ce-type", "order.paid")},
			miss:   []*handlers.Message{msg("b", `{"total":10}`, "ce-type", "order.paid"), msg("a", `{"total":9}`, "ce-type", "order.paid"), msg("a", `{"total":10}`, "ce-type", "order.new")},
		},
		{
			name:   "no value pattern: a value that is not JSON matches",
			filter: "  key: [{exists: true}]\n",
			match:  []*handlers.Message{msg("k", "\x00\x01 not json")},
			miss:   []*handlers.Message{msg("", "\x00\x01 not json")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseFilter(t, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.match {
				if !f.Match(m) {
					t.Errorf("key %q value %s headers %v: want a match", m.Key, m.Value, m.Headers)
				}
			}
			for _, m := range tc.miss {
				if f.Match(m) {
					t.Errorf("key %q value %s headers %v: want no match", m.Key, m.Value, m.Headers)
				}
			}
		})
	}
}

func TestFilterNilMatchesAll(t *testing.T) {
	var f *handlers.Filter
	if !f.Match(msg("", "x")) {
		t.Fatal("a nil filter must match every message")
	}
}

func TestFilterErrorsNameThePath(t *testing.T) {
	cases := []struct{ filter, field, msg string }{
		{"  value:\n    price: [{numeric: [\">\", zero]}]\n", "filter.value.price[0].numeric[1]", "must be a number"},
		{"  value:\n    price: [{numeric: [\"~\", 1]}]\n", "filter.value.price[0].numeric[0]", "unknown operator"},
		{"  value:\n    price: [{numeric: [\"<\", 1, \">\", 5]}]\n", "filter.value.price[0].numeric", "lower bound then an upper bound"},
		{"  value:\n    price: [{numeric: 5}]\n", "filter.value.price[0].numeric", "operator and number pairs"},
		{"  value:\n    a:\n      b: [{prefix: 3}]\n", "filter.value.a.b[0].prefix", "non-empty string"},
		{"  value:\n    a: [{suffix: x}]\n", "filter.value.a[0].suffix", "unknown condition"},
		{"  value:\n    a: [{prefix: x, exists: true}]\n", "filter.value.a[0]", "exactly one"},
		{"  value:\n    a: []\n", "filter.value.a", "empty list"},
		{"  value:\n    a: paid\n", "filter.value.a", "must be a list"},
		{"  value:\n    a: [{exists: yes please}]\n", "filter.value.a[0].exists", "true or false"},
		{"  value:\n    a: [{anything-but: [{prefix: x}]}]\n", "filter.value.a[0].anything-but[0]", "must be a string"},
		{"  headers: [a]\n", "filter.headers", "header names"},
		{"  body:\n    a: [1]\n", "filter.body", "unknown field"},
		{"  {}\n", "filter", "must not be empty"},
		{"  [a]\n", "filter", "must be an object"},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			_, err := parseFilter(t, tc.filter)
			var fe *handlers.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want a *FieldError, got %v", err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("got %q, want field %q with %q", err, tc.field, tc.msg)
			}
		})
	}
}

// A spec with a filter survives the JSON round trip the registry makes,
// compiled and equal.
func TestFilterJSONRoundTrip(t *testing.T) {
	spec, err := handlers.ParseOne([]byte("name: f\ntopic: t\ngo: {}\nfilter:\n  value:\n    price: [{numeric: [\">\", 10]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"filter":{"value":{"price":[{"numeric":["\u003e",10]}]}}`) {
		t.Fatalf("marshalled: %s", b)
	}
	var back handlers.Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, spec) {
		t.Fatalf("round trip changed the spec:\n%+v\n%+v", back.Filter, spec.Filter)
	}
	if back.Filter.Match(msg("", `{"price":5}`)) || !back.Filter.Match(msg("", `{"price":11}`)) {
		t.Fatal("the round-tripped filter does not match as the original")
	}
	if err := json.Unmarshal([]byte(`{"name":"f","topic":"t","go":{},"filter":{"value":{"a":[{"numeric":[">"]}]}}}`), &back); err == nil ||
		!strings.Contains(err.Error(), "filter.value.a[0].numeric") {
		t.Fatalf("bad JSON filter: %v", err)
	}
}

// BenchmarkFilterMatch is the filter's cost per message: a 3-condition
// pattern over a ~200-byte JSON value.
func BenchmarkFilterMatch(b *testing.B) {
	f, err := parseFilter(b, "  headers:\n    ce-type: [order.created, order.paid]\n  value:\n    status: [{anything-but: [cancelled]}]\n    total: [{numeric: [\">\", 0, \"<=\", 1000]}]\n")
	if err != nil {
		b.Fatal(err)
	}
	m := msg("order-42", `{"id":"order-42","status":"paid","total":99.5,"currency":"EUR","customer":{"id":"c-7","tier":"gold","email":"a@example.com"},"lines":[{"sku":"A1","qty":2},{"sku":"B7","qty":1}]}`,
		"ce-type", "order.paid", "content-type", "application/json")
	b.ReportAllocs()
	for b.Loop() {
		if !f.Match(m) {
			b.Fatal("no match")
		}
	}
}

func BenchmarkFilterMatchKeyOnly(b *testing.B) {
	f, err := parseFilter(b, "  key: [{prefix: order-}]\n  headers:\n    ce-type: [order.paid]\n")
	if err != nil {
		b.Fatal(err)
	}
	m := msg("order-42", `{"id":"order-42"}`, "ce-type", "order.paid")
	b.ReportAllocs()
	for b.Loop() {
		if !f.Match(m) {
			b.Fatal("no match")
		}
	}
}
