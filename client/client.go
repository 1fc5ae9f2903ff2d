package client

import (
	"crypto/rand"

	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
)

// DefaultTimeout bounds one request made with the default HTTP client.
const DefaultTimeout = 30 * time.Second

// maxErrorBody is how much of a non-2xx body is read: enough for any
// api.Error, little enough that a misdirected --server cannot flood us.
const maxErrorBody = 1 << 20

// Client calls one Sluice node's HTTP API. It is safe for concurrent use.
type Client struct {
	base  string // absolute http(s) URL without a trailing slash
	hc    *http.Client
	token string
}

// Option changes how New builds a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc instead of a
// client with DefaultTimeout. hc's own Timeout, transport and TLS settings
// then apply. A nil hc keeps the default.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithToken sends token as the bearer token of every request (the API's
// api.tokens). Empty sends none.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// New returns a Client for the API at baseURL, an absolute http or https
// URL such as "http://127.0.0.1:8080". A path in baseURL is kept as a
// prefix of every request path, for an API behind a reverse proxy.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q must be an absolute http(s) URL such as http://127.0.0.1:8080", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("API URL %q must not have a query or fragment", baseURL)
	}
	c := &Client{
		base: strings.TrimSuffix(u.String(), "/"),
		hc:   &http.Client{Timeout: DefaultTimeout},
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// BaseURL returns the API URL the Client calls, without a trailing slash.
func (c *Client) BaseURL() string { return c.base }

// ApplyHandler registers spec under spec.Name, or replaces the registered
// spec of that name. created reports whether the handler is new. The server
// normalizes and validates the spec; a spec it refuses is an *APIError
// with status 400 whose Field names the offending field.
func (c *Client) ApplyHandler(ctx context.Context, spec handlers.Spec) (h api.Handler, created bool, err error) {
	if spec.Name == "" {
		return h, false, errors.New("applying handler: the spec has no name")
	}
	status, err := c.do(ctx, http.MethodPut, handlerPath(spec.Name), spec, &h)
	if err != nil {
		return h, false, err
	}
	return h, status == http.StatusCreated, nil
}

// ApplyHandlerIf is ApplyHandler over version (a Handler.Version read
// before): if the handler has changed since, or does not exist, nothing is
// applied and the error is a 409 (*APIError) that says what the version is
// now.
func (c *Client) ApplyHandlerIf(ctx context.Context, spec handlers.Spec, version int64) (h api.Handler, created bool, err error) {
	if spec.Name == "" {
		return h, false, errors.New("applying handler: the spec has no name")
	}
	body := struct {
		handlers.Spec
		Version int64 `json:"version"`
	}{spec, version}
	status, err := c.do(ctx, http.MethodPut, handlerPath(spec.Name), body, &h)
	if err != nil {
		return h, false, err
	}
	return h, status == http.StatusCreated, nil
}

// ListHandlers returns every registered handler.
func (c *Client) ListHandlers(ctx context.Context) ([]api.Handler, error) {
	var l api.HandlerList
	if _, err := c.do(ctx, http.MethodGet, "/v1/handlers", nil, &l); err != nil {
		return nil, err
	}
	return l.Handlers, nil
}

// GetHandler returns the named handler. If there is none, the error
// satisfies IsNotFound.
func (c *Client) GetHandler(ctx context.Context, name string) (api.Handler, error) {
	var h api.Handler
	if name == "" {
		return h, errors.New("getting handler: the name is empty")
	}
	_, err := c.do(ctx, http.MethodGet, handlerPath(name), nil, &h)
	return h, err
}

// DeleteHandler unregisters the named handler. Its consumer group and
// committed offsets are the server's business. If there is no such handler,
// the error satisfies IsNotFound.
func (c *Client) DeleteHandler(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("deleting handler: the name is empty")
	}
	_, err := c.do(ctx, http.MethodDelete, handlerPath(name), nil, nil)
	return err
}

// PauseHandler stops the named handler from taking new messages and
// returns it as paused. Pausing a paused handler is not an error.
func (c *Client) PauseHandler(ctx context.Context, name string) (api.Handler, error) {
	return c.handlerAction(ctx, name, "pause")
}

// ResumeHandler undoes PauseHandler. Resuming a running handler is not an
// error.
func (c *Client) ResumeHandler(ctx context.Context, name string) (api.Handler, error) {
	return c.handlerAction(ctx, name, "resume")
}

func (c *Client) handlerAction(ctx context.Context, name, action string) (api.Handler, error) {
	var h api.Handler
	if name == "" {
		return h, fmt.Errorf("%s handler: the name is empty", action)
	}
	_, err := c.do(ctx, http.MethodPost, handlerPath(name)+"/"+action, nil, &h)
	return h, err
}

// Publish writes msgs to topic in one request and returns where each
// landed, in the order of msgs. With no msgs it sends nothing.
func (c *Client) Publish(ctx context.Context, topic string, msgs []api.PublishMessage) ([]api.Produced, error) {
	return c.PublishTo(ctx, "", topic, msgs)
}

// PublishTo is Publish into a queue of source (nats, amqp, redis or
// postgres; "" or kafka is Publish).
func (c *Client) PublishTo(ctx context.Context, source, topic string, msgs []api.PublishMessage) ([]api.Produced, error) {
	if topic == "" {
		return nil, errors.New("publishing: the topic is empty")
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	var r api.PublishResponse
	path := "/v1/topics/" + url.PathEscape(topic) + "/messages"
	if source != "" {
		path += "?source=" + url.QueryEscape(source)
	}
	if _, err := c.do(ctx, http.MethodPost, path, api.PublishRequest{Messages: msgs}, &r); err != nil {
		return nil, err
	}
	if len(r.Results) != len(msgs) {
		return r.Results, fmt.Errorf("publishing to %s: the server reported %d results for %d messages", topic, len(r.Results), len(msgs))
	}
	return r.Results, nil
}

// ListTopics returns every topic, internal ones included, as the server
// lists them.
func (c *Client) ListTopics(ctx context.Context) ([]api.TopicInfo, error) {
	var l api.TopicList
	if _, err := c.do(ctx, http.MethodGet, "/v1/topics", nil, &l); err != nil {
		return nil, err
	}
	return l.Topics, nil
}

// CreateTopic creates a topic with the given number of partitions; 0 means
// the server's default. If the topic exists, the error satisfies
// IsConflict.
func (c *Client) CreateTopic(ctx context.Context, name string, partitions int) error {
	if name == "" {
		return errors.New("creating topic: the name is empty")
	}
	_, err := c.do(ctx, http.MethodPost, "/v1/topics", api.CreateTopicRequest{Name: name, Partitions: partitions}, nil)
	return err
}

// Health reports whether the node is alive (GET /healthz).
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	return c.health(ctx, "/healthz")
}

// Ready reports whether the node can serve (GET /readyz). A node that is
// not ready answers 503: Ready then returns the node's report, whose
// Checks say what is wrong, together with an *APIError.
func (c *Client) Ready(ctx context.Context) (api.Health, error) {
	return c.health(ctx, "/readyz")
}

func (c *Client) health(ctx context.Context, path string) (api.Health, error) {
	var h api.Health
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return h, fmt.Errorf("reading the answer to GET %s: %w", path, err)
	}
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(body, &h); err != nil {
			return h, c.notAPI(path, err)
		}
		return h, nil
	}
	// A failing check answers with the health report, not an api.Error.
	var both struct {
		api.Health
		api.Error
	}
	if json.Unmarshal(body, &both) != nil || both.Status == "" {
		return h, newAPIError(resp, body)
	}
	h = both.Health
	msg := both.Error.Error
	if msg == "" {
		msg = fmt.Sprintf("node is %s", h.Status)
		if failing := failingChecks(h.Checks); failing != "" {
			msg += ": " + failing
		}
	}
	return h, &APIError{StatusCode: resp.StatusCode, Message: msg, Field: both.Field}
}

// failingChecks lists the checks that are not "ok", sorted by name.
func failingChecks(checks map[string]string) string {
	var out []string
	for name, v := range checks {
		if v != "ok" {
			out = append(out, name+": "+v)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func handlerPath(name string) string { return "/v1/handlers/" + url.PathEscape(name) }

// do sends in (if not nil) as JSON and decodes a 2xx answer into out (if
// not nil). It returns the status code of a 2xx answer.
func (c *Client) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encoding the request for %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return resp.StatusCode, newAPIError(resp, b)
	}
	if out == nil {
		// Drain so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return resp.StatusCode, c.notAPI(path, err)
	}
	return resp.StatusCode, nil
}

func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil || method != http.MethodGet && method != http.MethodHead {
		// The node refuses a change without it (a browser's cross-site
		// request cannot send it).
		req.Header.Set("Content-Type", "application/json")
	}
	injectTrace(ctx, req.Header)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up; the server may be fine.
			return nil, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in UnreachableError already
		}
		return nil, &UnreachableError{URL: c.base, Err: err}
	}
	return resp, nil
}

func (c *Client) notAPI(path string, err error) error {
	return fmt.Errorf("the answer of %s%s is not Sluice API JSON (is that the right address?): %w", c.base, path, err)
}

// APIError is a non-2xx answer from the API.
type APIError struct {
	// StatusCode is the HTTP status, such as 400, 404 or 409.
	StatusCode int
	// Message is the server's message, or the status text if the body was
	// not an api.Error.
	Message string
	// Field names the offending input field, such as "http.url", when the
	// server named one.
	Field string
}

// Error returns the server's message, prefixed with the field path unless
// the message starts with it already.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	if e.Field != "" && !strings.HasPrefix(msg, e.Field) {
		return e.Field + ": " + msg
	}
	return msg
}

func newAPIError(resp *http.Response, body []byte) *APIError {
	var ae api.Error
	if json.Unmarshal(body, &ae) == nil && ae.Error != "" {
		return &APIError{StatusCode: resp.StatusCode, Message: ae.Error, Field: ae.Field}
	}
	// Not our server's body (a proxy, a load balancer): keep a little of it.
	msg := resp.Status
	if text := strings.TrimSpace(string(body)); text != "" {
		if line, _, _ := strings.Cut(text, "\n"); len(line) <= 200 {
			msg += ": " + line
		} else {
			msg += ": " + line[:200] + "..."
		}
	}
	return &APIError{StatusCode: resp.StatusCode, Message: msg}
}

// IsNotFound reports whether err is an *APIError with status 404.
func IsNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// IsConflict reports whether err is an *APIError with status 409, such as
// creating a topic that exists.
func IsConflict(err error) bool { return hasStatus(err, http.StatusConflict) }

func hasStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == code
}

// UnreachableError is a request that got no HTTP answer: nothing listens at
// the address, the name does not resolve, TLS failed, or the answer did not
// come within the timeout.
type UnreachableError struct {
	// URL is the Client's API URL.
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the Sluice API at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// injectTrace passes ctx's W3C trace context to the server; a publish made
// outside any trace starts one, so the messages it sends can be followed
// from the producer to the handler's endpoint.
func injectTrace(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		var tid trace.TraceID
		var sid trace.SpanID
		_, _ = rand.Read(tid[:])
		_, _ = rand.Read(sid[:])
		ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled,
		}))
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}
