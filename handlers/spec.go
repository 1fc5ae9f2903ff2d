package handlers

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Ordering says which messages of a handler must not run at the same time
// and must complete in offset order.
type Ordering string

const (
	// OrderingKey keeps the messages of each key in order and runs different
	// keys in parallel. The default.
	OrderingKey Ordering = "key"
	// OrderingPartition runs each partition one message at a time.
	OrderingPartition Ordering = "partition"
	// OrderingNone runs any message as soon as there is room.
	OrderingNone Ordering = "none"
)

// StartFrom says where a new handler starts reading a topic when its group
// has no committed offset yet.
type StartFrom string

const (
	// StartEarliest reads the topic from its first retained message. The default.
	StartEarliest StartFrom = "earliest"
	// StartLatest reads only messages produced after the handler first joins.
	StartLatest StartFrom = "latest"
)

// Defaults applied by Spec.Normalize.
const (
	// A handler that sets no concurrency gets an adaptive limit between
	// these: the engine finds the downstream's capacity (adaptive.go).
	DefaultConcurrencyMin   = 1
	DefaultConcurrencyMax   = 256
	MaxConcurrency          = 10000
	DefaultMaxInFlightBytes = 64 << 20
)

// Spec is a registered handler: which topic it consumes, what it invokes and
// how. The zero values of optional fields take the defaults documented on
// each field; Normalize fills them in.
type Spec struct {
	// Name identifies the handler: [a-z0-9][a-z0-9-]{0,62}. The handler
	// consumes with the consumer group "sluice.<name>".
	Name string `json:"name"`
	// Source is the kind of queue the handler consumes: kafka (default),
	// nats, amqp, redis or postgres.
	Source Source `json:"source,omitempty"`
	// Topic is what the handler consumes: the Kafka topic, JetStream
	// subject, RabbitMQ queue, Redis stream key or watermill-sql topic.
	Topic string `json:"topic"`
	// HTTP invokes an endpoint with one POST per message. Exactly one of
	// HTTP and Go is set.
	HTTP *HTTPSpec `json:"http,omitempty"`
	// Go invokes a function registered in-process under the handler's name.
	Go *GoSpec `json:"go,omitempty"`
	// Ordering is key (default), partition or none.
	Ordering Ordering `json:"ordering,omitempty"`
	// Concurrency is the most messages in flight for this handler on one
	// node, fixed or adaptive. Default adaptive between 1 and 256.
	Concurrency Concurrency `json:"concurrency,omitzero" sluice:"nonzero"`
	// MaxInFlightBytes bounds the bytes (keys, values, headers) of the
	// messages in flight on one node; fetching waits while it is reached.
	// Default 64 MiB.
	MaxInFlightBytes int64 `json:"maxInFlightBytes,omitempty" sluice:"nonzero"`
	// StartFrom is earliest (default), latest, or {group: NAME} to take
	// over a legacy consumer group (takeover.go).
	StartFrom StartFrom `json:"startFrom,omitempty"`
	// Timeout bounds one invocation; a timed-out invocation is a retryable
	// failure. Default 30s. For HTTP handlers http.timeout, when set, wins.
	Timeout Duration `json:"timeout,omitempty" sluice:"nonzero"`
	// Batch, when set, hands the handler up to batch.size messages at once.
	Batch *BatchSpec `json:"batch,omitempty"`
	// Retry says how failed messages are retried.
	Retry *RetrySpec `json:"retry,omitempty"`
	// Breaker pauses consumption while the downstream is failing.
	Breaker *BreakerSpec `json:"breaker,omitempty"`
	// RateLimit caps invocations per second on each node; 0 means none.
	RateLimit float64 `json:"rateLimit,omitempty"`
	// DeadLetter says where messages go that cannot be handled.
	DeadLetter *DeadLetterSpec `json:"deadLetter,omitempty"`
	// Scaling says how many nodes the fleet needs for this handler.
	Scaling *ScalingSpec `json:"scaling,omitempty"`
	// Filter, when set, is an event pattern (filter.go): messages that do
	// not match it are committed without an invocation, and counted.
	Filter *Filter `json:"filter,omitempty"`
	// OnSuccess, when set, is where the handler's outputs go (output.go):
	// an HTTP handler's 2xx response body, or what a Go handler Emits.
	OnSuccess *OutputSpec `json:"onSuccess,omitempty"`
	// OnFailure, when set, also receives each message that finally failed,
	// beside the dead-letter queue.
	OnFailure *OutputSpec `json:"onFailure,omitempty"`
}

// HTTPSpec configures the HTTP invoker.
type HTTPSpec struct {
	// URL is the absolute http(s) URL that receives one POST per message.
	URL string `json:"url"`
	// Timeout bounds one request; when unset the spec's timeout applies.
	Timeout Duration `json:"timeout,omitempty" sluice:"nonzero"`
	// Headers are added to every request.
	Headers map[string]string `json:"headers,omitempty"`
	// Signing, when set, signs every request with Standard Webhooks
	// headers (webhook-id, webhook-timestamp, webhook-signature).
	Signing *SigningSpec `json:"signing,omitempty"`
}

// GoSpec selects the Go function registered under the handler's name.
type GoSpec struct{}

// Group is the Kafka consumer group the handler consumes with.
func (s *Spec) Group() string { return "sluice." + s.Name }

// Normalize fills in defaults. It is idempotent.
func (s *Spec) Normalize() {
	if s.Ordering == "" {
		s.Ordering = OrderingKey
		if s.Source.IsQueue() {
			// A queue keeps no order by key (validateSource).
			s.Ordering = OrderingNone
		}
	}
	if s.Concurrency.IsZero() && s.Batch != nil {
		// Room for at least one full batch.
		s.Concurrency = Adaptive(s.Batch.Size, max(DefaultConcurrencyMax, s.Batch.Size))
	}
	s.Concurrency.normalize()
	if s.MaxInFlightBytes == 0 {
		s.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if s.StartFrom == "" {
		s.StartFrom = StartEarliest
	}
	s.normalizePolicy()
	s.normalizeScaling()
	if s.Batch != nil {
		s.Batch.normalize()
	}
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	topicRE   = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	pgTopicRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`)
)

// ValidateTopic checks a Kafka topic name.
func ValidateTopic(field, topic string) error {
	switch {
	case topic == "":
		return &FieldError{Field: field, Msg: "is required"}
	case topic == "." || topic == "..":
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q is not a valid topic name", topic)}
	case !topicRE.MatchString(topic):
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q is not a valid topic name: use up to 249 of a-z A-Z 0-9 . _ -", topic)}
	}
	return nil
}

// ValidateName checks a handler name.
func ValidateName(name string) error {
	if name == "" {
		return &FieldError{Field: "name", Msg: "is required"}
	}
	if !nameRE.MatchString(name) {
		return &FieldError{Field: "name", Msg: fmt.Sprintf("%q must match [a-z0-9][a-z0-9-]{0,62}", name)}
	}
	return nil
}

// Validate checks a normalized spec and returns a *FieldError naming the
// first field that is wrong.
func (s *Spec) Validate() error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if err := ValidateTopic("topic", s.Topic); err != nil {
		return err
	}
	if strings.HasPrefix(s.Topic, "__") {
		return &FieldError{Field: "topic", Msg: fmt.Sprintf("%q is an internal topic", s.Topic)}
	}
	switch {
	case s.HTTP == nil && s.Go == nil:
		return &FieldError{Field: "http", Msg: "one invoker is required: http or go"}
	case s.HTTP != nil && s.Go != nil:
		return &FieldError{Field: "go", Msg: "only one invoker may be set: http or go"}
	}
	if s.HTTP != nil {
		u, err := url.Parse(s.HTTP.URL)
		if s.HTTP.URL == "" {
			return &FieldError{Field: "http.url", Msg: "is required"}
		}
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &FieldError{Field: "http.url", Msg: fmt.Sprintf("must be an absolute http(s) URL, got %q", s.HTTP.URL)}
		}
		if s.HTTP.Timeout != 0 {
			if err := durationIn("http.timeout", s.HTTP.Timeout, MinTimeout, MaxTimeout); err != nil {
				return err
			}
		}
		for k := range s.HTTP.Headers {
			if !validHeaderName(k) {
				return &FieldError{Field: "http.headers." + k, Msg: "is not a valid HTTP header name"}
			}
		}
		if s.HTTP.Signing != nil {
			if err := s.HTTP.Signing.validate(); err != nil {
				return err
			}
		}
	}
	switch s.Ordering {
	case OrderingKey, OrderingPartition, OrderingNone:
	default:
		return &FieldError{Field: "ordering", Msg: fmt.Sprintf("must be key, partition or none, got %q", s.Ordering)}
	}
	if err := s.Concurrency.validate(); err != nil {
		return err
	}
	if s.Batch != nil {
		if err := s.Batch.validate(); err != nil {
			return err
		}
		if s.Batch.Size > s.Concurrency.Max {
			return &FieldError{Field: "batch.size", Msg: fmt.Sprintf("must be at most the concurrency limit (%d): a batch is made of messages in flight", s.Concurrency.Max)}
		}
	}
	if s.MaxInFlightBytes < 1024 {
		return &FieldError{Field: "maxInFlightBytes", Msg: fmt.Sprintf("must be at least 1024, got %d", s.MaxInFlightBytes)}
	}
	if err := s.validateStartFrom(); err != nil {
		return err
	}
	if err := s.validatePolicy(); err != nil {
		return err
	}
	if err := s.validateScaling(); err != nil {
		return err
	}
	if err := s.validateOutputs(); err != nil {
		return err
	}
	return s.validateSource()
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if c > 127 || !(c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// FieldError is a problem with one field of a spec. Field is the path from
// the spec's root, such as "http.url".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Duration is a time.Duration written as a Go duration string ("250ms",
// "30s") in YAML and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("must be a duration such as \"500ms\" or \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("must be a duration such as \"500ms\" or \"30s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// ReplayTopic is the handler's own topic for messages replayed from its
// dead-letter queue; only this handler consumes it.
func (s *Spec) ReplayTopic() string { return "__sluice." + s.Name + ".replay" }

// RetryTopics are the handler's delay topics in retry mode topics, one per
// delay, in order.
func (s *Spec) RetryTopics() []string {
	if s.Retry == nil || s.Retry.Mode != RetryTopics {
		return nil
	}
	out := make([]string, len(s.Retry.Delays))
	for i, d := range s.Retry.Delays {
		out[i] = fmt.Sprintf("__sluice.%s.retry.%d.%s", s.Name, i+1, d.D())
	}
	return out
}

// Topics are all the topics the handler consumes: its own, its replay
// topic and its delay topics.
func (s *Spec) Topics() []string {
	return append([]string{s.Topic, s.ReplayTopic()}, s.RetryTopics()...)
}
