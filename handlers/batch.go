package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// BatchSpec lets a handler take several messages at once.
type BatchSpec struct {
	// Size is the most messages in one batch, 1 to 1,000.
	Size int `json:"size" sluice:"nonzero"`
	// Window is the longest a batch waits to fill. Default 50ms.
	Window Duration `json:"window,omitempty" sluice:"nonzero"`
}

// DefaultBatchWindow is a batch's default fill time.
const DefaultBatchWindow = 50 * time.Millisecond

func (b *BatchSpec) normalize() {
	if b.Window == 0 {
		b.Window = Duration(DefaultBatchWindow)
	}
}

func (b *BatchSpec) validate() error {
	switch {
	case b.Size < 1 || b.Size > 1000:
		return &FieldError{Field: "batch.size", Msg: fmt.Sprintf("must be between 1 and 1000, got %d", b.Size)}
	case b.Window <= 0 || b.Window.D() > 10*time.Second:
		return &FieldError{Field: "batch.window", Msg: fmt.Sprintf("must be above 0 and at most 10s, got %s", b.Window.D())}
	}
	return nil
}

// BatchInvoker delivers several messages at once. It returns nil when all
// succeeded; a *BatchError naming the messages that failed (the others
// succeeded); or any other error, which fails them all. The engine never
// puts in one batch two messages that must stay in order.
type BatchInvoker interface {
	InvokeBatch(ctx context.Context, ms []*Message) error
}

// BatchError reports the messages of a batch that failed; every other
// message of the batch succeeded. An error wrapped with Permanent sends its
// message straight to the dead-letter queue.
type BatchError struct {
	Failed map[*Message]error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("%d messages of the batch failed", len(e.Failed))
}

// Fail records m as failed with err and returns e, for building a
// BatchError in a handler.
func (e *BatchError) Fail(m *Message, err error) *BatchError {
	if e.Failed == nil {
		e.Failed = map[*Message]error{}
	}
	e.Failed[m] = err
	return e
}

// BatchFunc is a Go handler that takes a batch.
type BatchFunc func(ctx context.Context, ms []*Message) error

// InvokeBatch calls f, turning a panic into the failure of the whole batch.
func (f BatchFunc) InvokeBatch(ctx context.Context, ms []*Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r}
		}
	}()
	return f(ctx, ms)
}

// Invoke makes a BatchFunc usable one message at a time.
func (f BatchFunc) Invoke(ctx context.Context, m *Message) error {
	err := f.InvokeBatch(ctx, []*Message{m})
	if be, ok := err.(*BatchError); ok {
		return be.Failed[m]
	}
	return err
}

// batchItem is one message in an HTTP batch body.
type batchItem struct {
	ID          string            `json:"id"`
	Topic       string            `json:"topic"`
	Partition   int               `json:"partition"`
	Offset      int64             `json:"offset"`
	Time        time.Time         `json:"time,omitzero"`
	Attempt     int               `json:"attempt"`
	Key         *string           `json:"key,omitempty"`
	KeyBase64   string            `json:"keyBase64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Value       json.RawMessage   `json:"value,omitempty"`
	ValueBase64 string            `json:"valueBase64,omitempty"`
}

// batchReply is what an endpoint may answer to a batch.
type batchReply struct {
	Failed []string `json:"failed"`
}

// ErrReportedFailed is the failure of a message the endpoint listed in
// "failed".
var ErrReportedFailed = fmt.Errorf("the endpoint reported the message failed")

// InvokeBatch POSTs ms as one JSON array (each message with its id, key,
// headers and value: JSON when it parses, base64 otherwise). A 2xx answer
// may list ids that failed ({"failed": ["id", ...]}, as Lambda's
// ReportBatchItemFailures); only those are retried. Any other answer fails
// the whole batch.
func (h *HTTPInvoker) InvokeBatch(ctx context.Context, ms []*Message) error {
	items := make([]batchItem, len(ms))
	for i, m := range ms {
		it := batchItem{ID: m.ID(), Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time.UTC(), Attempt: m.Attempt}
		if m.Key != nil {
			if utf8.Valid(m.Key) {
				k := string(m.Key)
				it.Key = &k
			} else {
				it.KeyBase64 = base64.StdEncoding.EncodeToString(m.Key)
			}
		}
		if len(m.Headers) > 0 {
			it.Headers = make(map[string]string, len(m.Headers))
			for _, hd := range m.Headers {
				if utf8.Valid(hd.Value) {
					it.Headers[hd.Key] = string(hd.Value)
				}
			}
		}
		if len(m.Value) > 0 && json.Valid(m.Value) {
			it.Value = m.Value
		} else if len(m.Value) > 0 {
			it.ValueBase64 = base64.StdEncoding.EncodeToString(m.Value)
		}
		items[i] = it
	}
	body, err := json.Marshal(items)
	if err != nil {
		return Permanent(fmt.Errorf("encoding the batch: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("building request: %w", err))
	}
	for k, v := range h.headers {
		req.Header[k] = v
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Ce-Specversion"] = []string{"1.0"}
	req.Header["Ce-Type"] = []string{"dev.sluice.batch"}
	req.Header["Ce-Source"] = []string{"/sluice/topics/" + ms[0].Topic}
	req.Header["Ce-Id"] = []string{ms[0].ID() + "+" + strconv.Itoa(len(ms))}
	req.Header["Sluice-Batch-Size"] = []string{strconv.Itoa(len(ms))}
	traceContext.Inject(ctx, propagationCarrier(req.Header))
	if err := h.setSignature(req, req.Header["Ce-Id"][0], body); err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if re, ok := refused(err); ok {
			return Permanent(fmt.Errorf("POST %s: %w", RedactURL(h.url), re))
		}
		if ctx.Err() != nil {
			return &TimeoutError{}
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", RedactURL(h.url), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return &HTTPError{StatusCode: resp.StatusCode, Body: string(bytes.ToValidUTF8(b, []byte("?"))),
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBatchReply))
	return parseBatchReply(resp.Header.Get("Content-Type"), b, ms)
}

// maxBatchReply bounds how much of a batch's 2xx answer is read.
const maxBatchReply = 4 << 20

// parseBatchReply reads a 2xx answer to a batch: nil when every message
// succeeded, or a *BatchError naming the messages of ms whose ids the
// answer lists in "failed". An empty body, a body that is not JSON, or
// ids that are not in the batch count as success: the endpoint answered
// 2xx.
func parseBatchReply(contentType string, b []byte, ms []*Message) error {
	if len(bytes.TrimSpace(b)) == 0 || !strings.Contains(contentType, "json") && b[0] != '{' {
		return nil
	}
	var reply batchReply
	if err := json.Unmarshal(b, &reply); err != nil || len(reply.Failed) == 0 {
		return nil
	}
	byID := make(map[string]*Message, len(ms))
	for _, m := range ms {
		byID[m.ID()] = m
	}
	be := &BatchError{}
	for _, id := range reply.Failed {
		if m, ok := byID[id]; ok {
			be.Fail(m, ErrReportedFailed)
		}
	}
	if len(be.Failed) == 0 {
		return nil
	}
	return be
}
