package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"

	"github.com/sluicehq/sluice/handlers"
)

// Backend is what the API serves. The node (package sluice) implements it.
type Backend interface {
	ListHandlers(ctx context.Context) ([]Handler, error)
	GetHandler(ctx context.Context, name string) (Handler, error)
	// ApplyHandler creates or replaces a handler; created reports which.
	// With ifVersion >= 0 it applies only over that version of the handler
	// (Handler.Version), else it fails with ErrConflict; AnyVersion applies
	// whatever is there.
	ApplyHandler(ctx context.Context, spec handlers.Spec, ifVersion int64) (h Handler, created bool, err error)
	DeleteHandler(ctx context.Context, name string) error
	SetPaused(ctx context.Context, name string, paused bool) (Handler, error)
	// Publish writes recs to topic on source's server (Kafka, or a queue).
	Publish(ctx context.Context, source handlers.Source, topic string, recs []Record) ([]Produced, error)
	ListTopics(ctx context.Context) ([]TopicInfo, error)
	CreateTopic(ctx context.Context, name string, partitions int) error
	// Ready reports whether the node can serve, with the state of each check.
	Ready(ctx context.Context) (bool, map[string]string)

	// The dead-letter calls read the handler's current dead-letter topic
	// when topic is "", else topic, which must be one the handler used
	// (see DeadLetterTopics); the handler may then no longer exist.
	ListDeadLetters(ctx context.Context, name, topic string, f DeadLetterFilter) (DeadLetterPage, error)
	GetDeadLetter(ctx context.Context, name, topic, id string) (DeadLetter, error)
	ReplayDeadLetters(ctx context.Context, name, topic string, sel Selection) (int, error)
	DiscardDeadLetters(ctx context.Context, name, topic string, sel Selection) (int, error)
	// StartDeadLetterJob starts a replay or purge (kind JobReplay or
	// JobPurge) that runs in the node; ErrConflict while the handler has
	// one running.
	StartDeadLetterJob(ctx context.Context, name, topic, kind string, sel Selection) (DeadLetterJob, error)
	GetDeadLetterJob(ctx context.Context, name, id string) (DeadLetterJob, error)
	ListDeadLetterJobs(ctx context.Context, name string) ([]DeadLetterJob, error)
	DeadLetterTopics(ctx context.Context, name string) (DeadLetterTopics, error)

	Overview(ctx context.Context) Overview
	// Fleet lists the live nodes, from the consumer groups of the handlers.
	Fleet(ctx context.Context) (Fleet, error)
	Series(ctx context.Context, name string, d time.Duration) (Series, error)
	Partitions(ctx context.Context, name string) (PartitionList, error)
}

// Errors a Backend returns that map to HTTP statuses.
var (
	ErrNotFound = errors.New("not found")
	// ErrUnavailable is a node that cannot serve yet (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrConflict is a change made over a version that is no longer the
	// current one (409).
	ErrConflict = errors.New("conflict")
)

// AnyVersion is ApplyHandler's ifVersion for an unconditional apply.
const AnyVersion = -1

// ServerConfig tunes the API server.
type ServerConfig struct {
	// MaxPublishBytes bounds a publish body; larger gets 413. Default 8 MiB.
	MaxPublishBytes int64
	// MaxSpecBytes bounds a handler spec body. Default 1 MiB.
	MaxSpecBytes int64
	Logger       *slog.Logger
	// Propagator extracts the trace context of incoming requests; nil
	// ignores it.
	Propagator propagation.TextMapPropagator
	// Metrics, if set, serves GET /metrics.
	Metrics http.Handler
	// UI, if set, serves the dashboard at / (every path the API does not
	// own). Its assets are open; the data it shows come from the API.
	UI http.Handler
	// Auth, if set, requires a bearer token on /v1/ (and on /metrics with
	// MetricsNeedToken); nil leaves the API open. /healthz and /readyz are
	// always open.
	Auth *Auth
	// MetricsNeedToken requires a token (any role) on /metrics.
	MetricsNeedToken bool
	// AllowedHosts are the names (besides IP addresses and localhost) a
	// request's Host header may carry: "name", "*.domain" or "*" for any.
	// Others get 421 (see browser.go).
	AllowedHosts []string
}

// DefaultMaxPublishBytes bounds a publish request body unless configured.
const DefaultMaxPublishBytes = 8 << 20

// NewServer returns the API's http.Handler.
func NewServer(b Backend, cfg ServerConfig) http.Handler {
	if cfg.MaxPublishBytes <= 0 {
		cfg.MaxPublishBytes = DefaultMaxPublishBytes
	}
	if cfg.MaxSpecBytes <= 0 {
		cfg.MaxSpecBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &server{b: b, cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	// Roles: viewer reads, publisher also publishes, admin changes.
	v, p, a := RoleViewer, RolePublisher, RoleAdmin
	mux.HandleFunc("GET /v1/whoami", s.need(v, s.whoami))
	mux.HandleFunc("GET /v1/handlers", s.need(v, s.listHandlers))
	mux.HandleFunc("GET /v1/handlers/{name}", s.need(v, s.getHandler))
	mux.HandleFunc("PUT /v1/handlers/{name}", s.need(a, s.putHandler))
	mux.HandleFunc("DELETE /v1/handlers/{name}", s.need(a, s.deleteHandler))
	mux.HandleFunc("POST /v1/handlers/{name}/pause", s.need(a, s.pause(true)))
	mux.HandleFunc("POST /v1/handlers/{name}/resume", s.need(a, s.pause(false)))
	mux.HandleFunc("GET /v1/topics", s.need(v, s.listTopics))
	mux.HandleFunc("POST /v1/topics", s.need(a, s.createTopic))
	mux.HandleFunc("POST /v1/topics/{topic}/messages", s.need(p, s.publish))
	mux.HandleFunc("GET /v1/handlers/{name}/dlq", s.need(v, s.listDLQ))
	mux.HandleFunc("GET /v1/handlers/{name}/dlq/{id}", s.need(v, s.getDLQ))
	mux.HandleFunc("DELETE /v1/handlers/{name}/dlq/{id}", s.need(a, s.discardOne))
	mux.HandleFunc("POST /v1/handlers/{name}/dlq/replay", s.need(a, s.dlqAction(true)))
	mux.HandleFunc("POST /v1/handlers/{name}/dlq/purge", s.need(a, s.dlqAction(false)))
	mux.HandleFunc("GET /v1/handlers/{name}/dlq/jobs", s.need(v, s.listDLQJobs))
	mux.HandleFunc("GET /v1/handlers/{name}/dlq/jobs/{job}", s.need(v, s.getDLQJob))
	mux.HandleFunc("GET /v1/handlers/{name}/dlq/topics", s.need(v, s.dlqTopics))
	mux.HandleFunc("GET /v1/overview", s.need(v, s.overview))
	mux.HandleFunc("GET /v1/fleet", s.need(v, s.fleet))
	mux.HandleFunc("GET /v1/handlers/{name}/series", s.need(v, s.series))
	mux.HandleFunc("GET /v1/handlers/{name}/partitions", s.need(v, s.partitions))
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no API route %s %s", r.Method, r.URL.Path))
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.UI != nil {
		mux.Handle("/", cfg.UI)
	}
	s.mux = mux
	return s
}

type server struct {
	b   Backend
	cfg ServerConfig
	mux *http.ServeMux
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			s.cfg.Logger.Error("API handler panicked", "path", r.URL.Path, "panic", v)
			writeErr(w, http.StatusInternalServerError, fmt.Errorf("internal error"))
		}
	}()
	if !s.browserCheck(w, r) {
		return
	}
	if s.cfg.Auth != nil && (strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/metrics" && s.cfg.MetricsNeedToken) {
		var ok bool
		if r, ok = s.cfg.Auth.authenticate(w, r); !ok {
			return
		}
	}
	if s.cfg.Propagator != nil {
		r = r.WithContext(s.cfg.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
	}
	s.mux.ServeHTTP(w, r)
}

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.b.Overview(r.Context()))
}

func (s *server) fleet(w http.ResponseWriter, r *http.Request) {
	f, err := s.b.Fleet(r.Context())
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (s *server) series(w http.ResponseWriter, r *http.Request) {
	d := 15 * time.Minute
	if v := r.URL.Query().Get("minutes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 60 {
			writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: "minutes", Msg: fmt.Sprintf("must be a whole number from 1 to 60, got %q", v)})
			return
		}
		d = time.Duration(n) * time.Minute
	}
	out, err := s.b.Series(r.Context(), r.PathValue("name"), d)
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) partitions(w http.ResponseWriter, r *http.Request) {
	out, err := s.b.Partitions(r.Context(), r.PathValue("name"))
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, err error) {
	e := Error{Error: err.Error()}
	var fe *handlers.FieldError
	if errors.As(err, &fe) {
		e.Field = fe.Field
	}
	writeJSON(w, status, e)
}

// backendErr maps a Backend error to its status.
func backendErr(w http.ResponseWriter, err error) {
	var fe *handlers.FieldError
	switch {
	case errors.Is(err, ErrNotFound):
		writeErr(w, http.StatusNotFound, err)
	case errors.Is(err, ErrTopicExists), errors.Is(err, ErrConflict):
		writeErr(w, http.StatusConflict, err)
	case errors.Is(err, ErrUnavailable):
		writeErr(w, http.StatusServiceUnavailable, err)
	case errors.Is(err, ErrNoPartition):
		writeErr(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrTooLarge):
		writeErr(w, http.StatusRequestEntityTooLarge, err)
	case errors.As(err, &fe):
		writeErr(w, http.StatusBadRequest, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("the broker did not answer in time: %w", err))
	default:
		writeErr(w, http.StatusBadGateway, err)
	}
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ok, checks := s.b.Ready(r.Context())
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, Health{Status: "not ready", Checks: checks})
		return
	}
	writeJSON(w, http.StatusOK, Health{Status: "ready", Checks: checks})
}

func (s *server) listHandlers(w http.ResponseWriter, r *http.Request) {
	hs, err := s.b.ListHandlers(r.Context())
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, HandlerList{Handlers: hs})
}

func (s *server) getHandler(w http.ResponseWriter, r *http.Request) {
	h, err := s.b.GetHandler(r.Context(), r.PathValue("name"))
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *server) putHandler(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := handlers.ValidateName(name); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	body, ok := s.readBody(w, r, s.cfg.MaxSpecBytes)
	if !ok {
		return
	}
	body, ifVersion, err := takeVersion(body, r.Header.Get("If-Match"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	spec, err := handlers.ParseOne(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if spec.Name != name {
		writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: "name",
			Msg: fmt.Sprintf("%q does not match the name in the URL, %q", spec.Name, name)})
		return
	}
	h, created, err := s.b.ApplyHandler(r.Context(), spec, ifVersion)
	if err != nil {
		backendErr(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, h)
}

func (s *server) deleteHandler(w http.ResponseWriter, r *http.Request) {
	if err := s.b.DeleteHandler(r.Context(), r.PathValue("name")); err != nil {
		backendErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h, err := s.b.SetPaused(r.Context(), r.PathValue("name"), paused)
		if err != nil {
			backendErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, h)
	}
}

func (s *server) listTopics(w http.ResponseWriter, r *http.Request) {
	ts, err := s.b.ListTopics(r.Context())
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, TopicList{Topics: ts})
}

func (s *server) createTopic(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r, 1<<16)
	if !ok {
		return
	}
	var req CreateTopicRequest
	if err := strictJSON(body, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if err := handlers.ValidateTopic("name", req.Name); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if strings.HasPrefix(req.Name, "__") {
		writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: "name", Msg: "names starting with __ are internal"})
		return
	}
	if req.Partitions < 0 || req.Partitions > 10000 {
		writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: "partitions", Msg: fmt.Sprintf("must be between 1 and 10000 (or 0 for the default), got %d", req.Partitions)})
		return
	}
	if err := s.b.CreateTopic(r.Context(), req.Name, req.Partitions); err != nil {
		if errors.Is(err, ErrTopicExists) {
			writeErr(w, http.StatusConflict, fmt.Errorf("topic %s already exists", req.Name))
			return
		}
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"name": req.Name})
}

func (s *server) publish(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := handlers.ValidateTopic("topic", topic); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if strings.HasPrefix(topic, "__") {
		writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: "topic", Msg: fmt.Sprintf("%q is an internal topic", topic)})
		return
	}
	source, err := handlers.ParseSource(r.URL.Query().Get("source"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: "source", Msg: err.Error()})
		return
	}
	if err := handlers.ValidateSourceTopic(source, "topic", topic); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	body, ok := s.readBody(w, r, s.cfg.MaxPublishBytes)
	if !ok {
		return
	}
	recs, err := decodePublish(body)
	if errors.Is(err, errTooManyMessages) {
		writeErr(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	for i, rec := range recs {
		if source.IsQueue() && rec.Partition >= 0 {
			writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: fmt.Sprintf("messages[%d].partition", i),
				Msg: fmt.Sprintf("a %s queue has no partitions", source)})
			return
		}
	}
	res, err := s.b.Publish(r.Context(), source, topic, recs)
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, PublishResponse{Results: res})
}

func toRecord(m PublishMessage) (Record, error) {
	rec := Record{Partition: -1}
	if m.Key != nil {
		rec.Key = []byte(*m.Key)
	}
	if m.Partition != nil {
		if *m.Partition < 0 {
			return rec, &handlers.FieldError{Field: "partition", Msg: "must not be negative"}
		}
		rec.Partition = *m.Partition
	}
	switch {
	case len(m.Value) > 0 && m.ValueBase64 != "":
		return rec, &handlers.FieldError{Field: "valueBase64", Msg: "set value or valueBase64, not both"}
	case m.ValueBase64 != "":
		v, err := base64.StdEncoding.DecodeString(m.ValueBase64)
		if err != nil {
			return rec, &handlers.FieldError{Field: "valueBase64", Msg: "is not valid base64"}
		}
		rec.Value = v
	case len(m.Value) > 0 && m.Value[0] == '"':
		var s string
		if err := json.Unmarshal(m.Value, &s); err != nil {
			return rec, &handlers.FieldError{Field: "value", Msg: "is not a valid JSON string"}
		}
		rec.Value = []byte(s)
	case len(m.Value) > 0:
		rec.Value = []byte(m.Value)
	default:
		rec.Value = []byte{}
	}
	for k, v := range m.Headers {
		if k == "" {
			return rec, &handlers.FieldError{Field: "headers", Msg: "header names must not be empty"}
		}
		if !utf8.ValidString(k) {
			return rec, &handlers.FieldError{Field: "headers", Msg: "header names must be UTF-8"}
		}
		rec.Headers = append(rec.Headers, Header{Key: k, Value: []byte(v)})
	}
	return rec, nil
}

// readBody reads at most limit bytes, answering 413 past it.
func (s *server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); !apiMediaType(ct) {
		writeErr(w, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q is not supported: send application/json or application/yaml", ct))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body is over the limit of %d bytes", limit))
			return nil, false
		}
		writeErr(w, http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
		return nil, false
	}
	return body, true
}

func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &handlers.FieldError{Field: te.Field, Msg: "has the wrong type"}
		}
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &handlers.FieldError{Field: strings.Trim(msg, `"`), Msg: "unknown field"}
		}
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return errors.New("malformed JSON: trailing data after the object")
	}
	return nil
}
