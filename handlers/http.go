package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"
)

// CloudEvents and Sluice request headers set by the HTTP invoker.
const (
	HeaderKey       = "Sluice-Key"
	HeaderKeyBase64 = "Sluice-Key-Base64"
	HeaderAttempt   = "Sluice-Attempt"
	HeaderPartition = "Sluice-Partition"
	HeaderOffset    = "Sluice-Offset"
	DefaultCEType   = "dev.sluice.message"
)

// maxErrorBody bounds how much of a failed response is kept in the error.
const maxErrorBody = 512

var traceContext = propagation.TraceContext{}

type propagationCarrier = propagation.HeaderCarrier

// HTTPInvoker POSTs each message to an endpoint in CloudEvents binary mode:
// the body is the message value, ce-* headers carry the event attributes,
// Kafka headers are passed through (ce_x as ce-x, as the CloudEvents Kafka
// binding maps them), and Sluice-Key / Sluice-Attempt carry the key and the
// attempt number. A 2xx answer is success; anything else is an *HTTPError.
type HTTPInvoker struct {
	url     string
	headers http.Header
	client  *http.Client
	signer  *signer // nil when the handler has no signing secret
}

// InvokerOption changes how NewHTTPInvoker builds an invoker.
type InvokerOption func(*invokerOptions)

type invokerOptions struct{ policy *NetPolicy }

// WithNetPolicy makes the invoker refuse every connection to an address
// that p refuses (see NetPolicy); such an invocation fails permanently
// with a *RefusedError. Default: no policy.
func WithNetPolicy(p *NetPolicy) InvokerOption {
	return func(o *invokerOptions) { o.policy = p }
}

// NewHTTPInvoker returns an invoker for spec, with a keep-alive pool sized for
// maxConns connections.
func NewHTTPInvoker(spec *HTTPSpec, maxConns int, opts ...InvokerOption) *HTTPInvoker {
	var o invokerOptions
	for _, opt := range opts {
		opt(&o)
	}
	h := make(http.Header, len(spec.Headers))
	for k, v := range spec.Headers {
		h.Set(k, v)
	}
	tr := &http.Transport{
		Proxy:               o.policy.proxy(http.ProxyFromEnvironment),
		DialContext:         o.policy.dialContext(&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}),
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	// Redirects are answers, not detours: following a 302 would turn the
	// POST into a bodiless GET that looks like success. A 3xx is a
	// permanent failure (consumers.classify), so a redirect never leads
	// anywhere the policy would refuse either.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	inv := &HTTPInvoker{url: spec.URL, headers: h, client: &http.Client{Transport: tr, CheckRedirect: noRedirect}}
	if spec.Signing != nil {
		inv.signer = newSigner(spec.Signing.SecretRef)
	}
	return inv
}

// CheckSigning reports whether the handler's signing secret, if it has
// one, can be read on this node.
func (h *HTTPInvoker) CheckSigning() error {
	if h.signer == nil {
		return nil
	}
	_, err := h.signer.load()
	return err
}

// setSignature signs the request last, so that nothing (a configured
// header included) can replace the signature headers.
func (h *HTTPInvoker) setSignature(req *http.Request, id string, body []byte) error {
	if h.signer == nil {
		return nil
	}
	return h.signer.sign(req.Header, id, body)
}

// Close releases idle connections.
func (h *HTTPInvoker) Close() { h.client.CloseIdleConnections() }

// Invoke sends m and reports the outcome. The caller bounds it with ctx's
// deadline; running out of it is a *TimeoutError.
func (h *HTTPInvoker) Invoke(ctx context.Context, m *Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(m.Value))
	if err != nil {
		return Permanent(fmt.Errorf("building request: %w", err))
	}
	setEventHeaders(req.Header, m)
	// The handler's configured headers win over anything a producer put
	// in the message (an Authorization header, say).
	for k, v := range h.headers {
		req.Header[k] = v
	}
	// The consumer span's context, when there is one, replaces whatever
	// traceparent the message carried.
	traceContext.Inject(ctx, propagationCarrier(req.Header))
	// A secret that cannot be read is the node's problem, not the
	// message's: a retryable failure, so nothing is dead-lettered for good
	// before an operator fixes it.
	if err := h.setSignature(req, m.ID(), m.Value); err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if re, ok := refused(err); ok {
			return Permanent(fmt.Errorf("POST %s: %w", RedactURL(h.url), re))
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &TimeoutError{}
		}
		// The client's *url.Error repeats the URL (its password as ***):
		// name it once, with the password as (set).
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", RedactURL(h.url), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if ctx.Value(outputsKey{}) != nil && resp.StatusCode != http.StatusNoContent {
			return emitResponse(ctx, resp)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return &HTTPError{
		StatusCode: resp.StatusCode,
		Body:       string(bytes.ToValidUTF8(body, []byte("?"))),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
}

func setEventHeaders(h http.Header, m *Message) {
	h["Ce-Specversion"] = []string{"1.0"}
	h["Ce-Id"] = []string{m.ID()}
	h["Ce-Source"] = []string{"/sluice/topics/" + m.Topic}
	h["Ce-Type"] = []string{DefaultCEType}
	// A producer may set the event's other attributes (ce_type,
	// ce_source, ce_subject...) with ce_ headers; ce-id stays Sluice's
	// stable topic/partition/offset, the key for deduplication.
	if !m.Time.IsZero() {
		h["Ce-Time"] = []string{m.Time.UTC().Format(time.RFC3339Nano)}
	}
	ctype := "application/octet-stream"
	for _, kh := range m.Headers {
		k := kh.Key
		switch {
		case strings.EqualFold(k, "content-type"):
			if printable(kh.Value) {
				ctype = string(kh.Value)
			}
			continue
		case strings.HasPrefix(k, "ce_"):
			k = "ce-" + k[3:]
		}
		if protectedHeader(k) {
			continue
		}
		if !validHeaderName(k) || reservedHeader(k) || !printable(kh.Value) {
			continue
		}
		h[http.CanonicalHeaderKey(k)] = []string{string(kh.Value)}
	}
	h["Content-Type"] = []string{ctype}
	if m.Key != nil {
		if printable(m.Key) {
			h[HeaderKey] = []string{string(m.Key)}
		} else {
			h[HeaderKeyBase64] = []string{base64Std(m.Key)}
		}
	}
	h[HeaderAttempt] = []string{strconv.Itoa(m.Attempt)}
	h[HeaderPartition] = []string{strconv.Itoa(m.Partition)}
	h[HeaderOffset] = []string{strconv.FormatInt(m.Offset, 10)}
}

// protectedHeader is a header only Sluice sets.
func protectedHeader(k string) bool {
	switch strings.ToLower(k) {
	case "ce-id", "ce-specversion", "sluice-key", "sluice-key-base64", "sluice-attempt", "sluice-partition", "sluice-offset",
		"traceparent", "tracestate", "webhook-id", "webhook-timestamp", "webhook-signature":
		return true
	}
	return false
}

func reservedHeader(k string) bool {
	switch strings.ToLower(k) {
	case "host", "content-length", "transfer-encoding", "connection", "te", "trailer", "upgrade", "keep-alive",
		"proxy-connection", "expect":
		return true
	}
	return false
}

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// HTTPError is a non-2xx answer from an endpoint.
type HTTPError struct {
	StatusCode int
	// Body is the start of the response body, at most 512 bytes.
	Body string
	// RetryAfter is the wait the endpoint asked for with Retry-After, or 0.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if b := strings.TrimSpace(e.Body); b != "" {
		s += ": " + b
	}
	return s
}

// TimeoutError is an invocation that did not finish within its timeout.
type TimeoutError struct{ After time.Duration }

func (e *TimeoutError) Error() string {
	if e.After == 0 {
		return "timed out"
	}
	return fmt.Sprintf("timed out after %s", e.After)
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
