package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/handlers"
)

// request is what the fake server saw.
type request struct {
	Method, Path, Body, ContentType string
}

// reply is what the fake server answers to one "METHOD /escaped/path".
type reply struct {
	status int
	body   string
}

// fake is an httptest server that answers canned replies and records every
// request. Routes missing from replies answer 404 with an api.Error.
type fake struct {
	*httptest.Server
	mu      sync.Mutex
	replies map[string]reply
	reqs    []request
}

func newFake(t *testing.T, replies map[string]reply) *fake {
	t.Helper()
	f := &fake{replies: replies}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, request{r.Method, r.URL.EscapedPath(), string(b), r.Header.Get("Content-Type")})
		rep, ok := f.replies[r.Method+" "+r.URL.EscapedPath()]
		f.mu.Unlock()
		if !ok {
			rep = reply{404, `{"error":"no route"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		io.WriteString(w, rep.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

func newClient(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.New(url)
	if err != nil {
		t.Fatalf("New(%q): %v", url, err)
	}
	return c
}

func TestNewValidatesURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		wantErr string // empty: valid
		base    string
	}{
		{url: "http://127.0.0.1:8080", base: "http://127.0.0.1:8080"},
		{url: "https://sluice.example.com/", base: "https://sluice.example.com"},
		{url: "http://proxy/sluice/", base: "http://proxy/sluice"},
		{url: "", wantErr: "must be an absolute http(s) URL"},
		{url: "127.0.0.1:8080", wantErr: "must be an absolute http(s) URL"},
		{url: "localhost:8080", wantErr: "must be an absolute http(s) URL"},
		{url: "ftp://host", wantErr: "must be an absolute http(s) URL"},
		{url: "http://", wantErr: "must be an absolute http(s) URL"},
		{url: "http://host/?a=b", wantErr: "must not have a query or fragment"},
		{url: "http://host\x7f", wantErr: "must be an absolute http(s) URL"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			c, err := client.New(tc.url)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.BaseURL() != tc.base {
					t.Fatalf("BaseURL = %q, want %q", c.BaseURL(), tc.base)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New(%q) error = %v, want one containing %q", tc.url, err, tc.wantErr)
			}
		})
	}
}

func TestApplyHandler(t *testing.T) {
	stored := api.Handler{Name: "orders", Version: 1, Spec: handlers.Spec{Name: "orders", Topic: "orders"}}
	body, _ := json.Marshal(stored)
	spec := handlers.Spec{Name: "orders", Topic: "orders", HTTP: &handlers.HTTPSpec{URL: "http://svc/hook"}}
	for _, tc := range []struct {
		status      int
		wantCreated bool
	}{
		{http.StatusCreated, true},
		{http.StatusOK, false},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			f := newFake(t, map[string]reply{"PUT /v1/handlers/orders": {tc.status, string(body)}})
			h, created, err := newClient(t, f.URL).ApplyHandler(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			if created != tc.wantCreated {
				t.Errorf("created = %v, want %v", created, tc.wantCreated)
			}
			if h.Name != "orders" || h.Version != 1 {
				t.Errorf("handler = %+v", h)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			if reqs[0].ContentType != "application/json" {
				t.Errorf("Content-Type = %q", reqs[0].ContentType)
			}
			var sent handlers.Spec
			if err := json.Unmarshal([]byte(reqs[0].Body), &sent); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sent, spec) {
				t.Errorf("sent %+v, want %+v", sent, spec)
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rep      reply
		wantMsg  string
		wantCode int
		field    string
		notFound bool
		conflict bool
	}{
		{
			name:     "field not in message",
			rep:      reply{400, `{"error":"must be an absolute http(s) URL","field":"http.url"}`},
			wantMsg:  "http.url: must be an absolute http(s) URL",
			wantCode: 400, field: "http.url",
		},
		{
			name:     "field already in message",
			rep:      reply{400, `{"error":"http.url: is required","field":"http.url"}`},
			wantMsg:  "http.url: is required",
			wantCode: 400, field: "http.url",
		},
		{
			name:     "not found",
			rep:      reply{404, `{"error":"handler \"orders\" not found"}`},
			wantMsg:  `handler "orders" not found`,
			wantCode: 404, notFound: true,
		},
		{
			name:     "conflict",
			rep:      reply{409, `{"error":"topic exists"}`},
			wantMsg:  "topic exists",
			wantCode: 409, conflict: true,
		},
		{
			name:     "not an api.Error",
			rep:      reply{502, "upstream down\n<html>"},
			wantMsg:  "502 Bad Gateway: upstream down",
			wantCode: 502,
		},
		{
			name:     "empty body",
			rep:      reply{500, ""},
			wantMsg:  "500 Internal Server Error",
			wantCode: 500,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, map[string]reply{"GET /v1/handlers/orders": tc.rep})
			_, err := newClient(t, f.URL).GetHandler(context.Background(), "orders")
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if err.Error() != tc.wantMsg {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.wantMsg)
			}
			if ae.StatusCode != tc.wantCode || ae.Field != tc.field {
				t.Errorf("StatusCode, Field = %d, %q; want %d, %q", ae.StatusCode, ae.Field, tc.wantCode, tc.field)
			}
			if client.IsNotFound(err) != tc.notFound {
				t.Errorf("IsNotFound = %v", !tc.notFound)
			}
			if client.IsConflict(err) != tc.conflict {
				t.Errorf("IsConflict = %v", !tc.conflict)
			}
		})
	}
}

func TestHandlerCalls(t *testing.T) {
	h := api.Handler{Name: "a-b", Paused: true}
	hb, _ := json.Marshal(h)
	list, _ := json.Marshal(api.HandlerList{Handlers: []api.Handler{h, {Name: "c"}}})
	f := newFake(t, map[string]reply{
		"GET /v1/handlers":              {200, string(list)},
		"GET /v1/handlers/a-b":          {200, string(hb)},
		"DELETE /v1/handlers/a-b":       {204, ""},
		"POST /v1/handlers/a-b/pause":   {200, string(hb)},
		"POST /v1/handlers/a-b/resume":  {200, `{"name":"a-b","paused":false}`},
		"GET /v1/handlers/we%2Fird%20x": {200, `{"name":"we/ird x"}`},
	})
	c := newClient(t, f.URL)
	ctx := context.Background()

	hs, err := c.ListHandlers(ctx)
	if err != nil || len(hs) != 2 || hs[0].Name != "a-b" || hs[1].Name != "c" {
		t.Errorf("ListHandlers = %+v, %v", hs, err)
	}
	if got, err := c.GetHandler(ctx, "a-b"); err != nil || got.Name != "a-b" || !got.Paused {
		t.Errorf("GetHandler = %+v, %v", got, err)
	}
	if err := c.DeleteHandler(ctx, "a-b"); err != nil {
		t.Errorf("DeleteHandler: %v", err)
	}
	if got, err := c.PauseHandler(ctx, "a-b"); err != nil || !got.Paused {
		t.Errorf("PauseHandler = %+v, %v", got, err)
	}
	if got, err := c.ResumeHandler(ctx, "a-b"); err != nil || got.Paused {
		t.Errorf("ResumeHandler = %+v, %v", got, err)
	}
	if got, err := c.GetHandler(ctx, "we/ird x"); err != nil || got.Name != "we/ird x" {
		t.Errorf("GetHandler of a name needing escapes = %+v, %v", got, err)
	}
	want := []string{
		"GET /v1/handlers",
		"GET /v1/handlers/a-b",
		"DELETE /v1/handlers/a-b",
		"POST /v1/handlers/a-b/pause",
		"POST /v1/handlers/a-b/resume",
		"GET /v1/handlers/we%2Fird%20x",
	}
	var got []string
	for _, r := range f.requests() {
		got = append(got, r.Method+" "+r.Path)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n got %q\nwant %q", got, want)
	}

	for name, call := range map[string]func() error{
		"GetHandler":    func() error { _, err := c.GetHandler(ctx, ""); return err },
		"DeleteHandler": func() error { return c.DeleteHandler(ctx, "") },
		"PauseHandler":  func() error { _, err := c.PauseHandler(ctx, ""); return err },
		"ApplyHandler":  func() error { _, _, err := c.ApplyHandler(ctx, handlers.Spec{}); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s with no name: no error", name)
		}
	}
	if n := len(f.requests()); n != len(want) {
		t.Errorf("calls without a name sent %d requests", n-len(want))
	}
}

func TestPublish(t *testing.T) {
	f := newFake(t, map[string]reply{
		"POST /v1/topics/orders/messages": {200, `{"results":[{"partition":2,"offset":40},{"partition":0,"offset":7}]}`},
		"POST /v1/topics/short/messages":  {200, `{"results":[{"partition":0,"offset":1}]}`},
	})
	c := newClient(t, f.URL)
	key := "k1"
	msgs := []api.PublishMessage{
		{Key: &key, Value: json.RawMessage(`"hello"`), Headers: map[string]string{"a": "b"}},
		{ValueBase64: "AP8="},
	}
	res, err := c.Publish(context.Background(), "orders", msgs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []api.Produced{{Partition: 2, Offset: 40}, {Partition: 0, Offset: 7}}; !reflect.DeepEqual(res, want) {
		t.Errorf("results = %+v, want %+v", res, want)
	}
	want := `{"messages":[{"key":"k1","value":"hello","headers":{"a":"b"}},{"valueBase64":"AP8="}]}`
	if got := f.requests()[0].Body; got != want {
		t.Errorf("body:\n got %s\nwant %s", got, want)
	}

	if _, err := c.Publish(context.Background(), "short", msgs); err == nil || !strings.Contains(err.Error(), "1 results for 2 messages") {
		t.Errorf("short answer: error = %v", err)
	}
	if res, err := c.Publish(context.Background(), "orders", nil); res != nil || err != nil {
		t.Errorf("Publish(nil) = %v, %v", res, err)
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("%d requests, want 2 (nothing for no messages)", n)
	}
}

func TestTopics(t *testing.T) {
	f := newFake(t, map[string]reply{
		"GET /v1/topics":  {200, `{"topics":[{"name":"orders","partitions":3,"messages":10}]}`},
		"POST /v1/topics": {201, `{"name":"new","partitions":4}`},
	})
	c := newClient(t, f.URL)
	ts, err := c.ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []api.TopicInfo{{Name: "orders", Partitions: 3, Messages: 10}}; !reflect.DeepEqual(ts, want) {
		t.Errorf("ListTopics = %+v, want %+v", ts, want)
	}
	if err := c.CreateTopic(context.Background(), "new", 4); err != nil {
		t.Fatal(err)
	}
	if got, want := f.requests()[1].Body, `{"name":"new","partitions":4}`; got != want {
		t.Errorf("CreateTopic body = %s, want %s", got, want)
	}
}

func TestHealthAndReady(t *testing.T) {
	f := newFake(t, map[string]reply{
		"GET /healthz": {200, `{"status":"ok"}`},
		"GET /readyz":  {503, `{"status":"unready","checks":{"broker":"dial tcp: refused","registry":"ok"}}`},
	})
	c := newClient(t, f.URL)
	h, err := c.Health(context.Background())
	if err != nil || h.Status != "ok" {
		t.Errorf("Health = %+v, %v", h, err)
	}
	h, err = c.Ready(context.Background())
	if h.Status != "unready" || h.Checks["broker"] != "dial tcp: refused" {
		t.Errorf("Ready report = %+v", h)
	}
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Fatalf("Ready error = %v, want an *APIError with 503", err)
	}
	if want := "node is unready: broker: dial tcp: refused"; err.Error() != want {
		t.Errorf("Ready error = %q, want %q", err, want)
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now

	_, err := newClient(t, url).ListHandlers(context.Background())
	var ue *client.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an *UnreachableError", err, err)
	}
	if ue.URL != url {
		t.Errorf("URL = %q, want %q", ue.URL, url)
	}
	if want := "cannot reach the Sluice API at " + url + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Error() = %q, want prefix %q", err, want)
	}
}

func TestCanceledIsNotUnreachable(t *testing.T) {
	f := newFake(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newClient(t, f.URL).ListHandlers(ctx)
	var ue *client.UnreachableError
	if !errors.Is(err, context.Canceled) || errors.As(err, &ue) {
		t.Fatalf("error = %v (%T), want context.Canceled and not *UnreachableError", err, err)
	}
}

func TestNotAPIJSON(t *testing.T) {
	f := newFake(t, map[string]reply{"GET /v1/topics": {200, "<html>hello</html>"}})
	_, err := newClient(t, f.URL).ListTopics(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is not Sluice API JSON") {
		t.Fatalf("error = %v", err)
	}
}

func TestPathPrefixAndHTTPClient(t *testing.T) {
	f := newFake(t, map[string]reply{"GET /sluice/v1/topics": {200, `{"topics":[]}`}})
	var n int
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n++
		return http.DefaultTransport.RoundTrip(r)
	})}
	c, err := client.New(f.URL+"/sluice/", client.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTopics(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("the given HTTP client sent %d requests, want 1", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
