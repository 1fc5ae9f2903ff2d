package handlers

import (
	"fmt"
	"time"
)

// Failure-policy defaults applied by Spec.Normalize.
const (
	DefaultTimeout             = 30 * time.Second
	DefaultMaxAttempts         = 5
	DefaultInitialBackoff      = 200 * time.Millisecond
	DefaultMaxBackoff          = time.Minute
	DefaultMultiplier          = 2.0
	DefaultBreakerFailureRatio = 0.5
	DefaultBreakerMinRequests  = 20
	DefaultBreakerOpenFor      = 30 * time.Second
	DefaultBreakerWindow       = 10 * time.Second
)

// Jitter spreads retries of many messages so they do not hit a recovering
// endpoint at once.
const (
	// JitterFull waits a random time between 0 and the backoff. The default.
	JitterFull = "full"
	// JitterNone waits exactly the backoff.
	JitterNone = "none"
)

// Retry modes.
const (
	// RetryInPlace retries a message where it is, holding back the messages
	// that must stay ordered behind it. The default.
	RetryInPlace = "inPlace"
	// RetryTopics parks a message that used its in-place attempts on delay
	// topics and retries it from there, blocking nothing (ordering none only).
	RetryTopics = "topics"
)

// RetrySpec says how often and how patiently a failed message is retried
// before it is dead-lettered.
type RetrySpec struct {
	// MaxAttempts counts every invocation of a message, the first included.
	// Default 5; must be at least 1.
	MaxAttempts int `json:"maxAttempts,omitempty" sluice:"nonzero"`
	// InitialBackoff is the wait before the second attempt. Default 200ms.
	InitialBackoff Duration `json:"initialBackoff,omitempty" sluice:"nonzero"`
	// MaxBackoff caps the wait between attempts. Default 1m.
	MaxBackoff Duration `json:"maxBackoff,omitempty" sluice:"nonzero"`
	// Multiplier grows the backoff after each attempt. Default 2.
	Multiplier float64 `json:"multiplier,omitempty" sluice:"nonzero"`
	// Jitter is full (default) or none.
	Jitter string `json:"jitter,omitempty"`
	// Mode is inPlace (default) or topics.
	Mode string `json:"mode,omitempty"`
	// Delays are the delay topics' waits in topics mode. Default 10s, 1m, 10m.
	Delays []Duration `json:"delays,omitempty"`
}

// BreakerSpec configures the circuit breaker that pauses consumption while
// the handler's downstream is failing.
type BreakerSpec struct {
	// Disabled turns the breaker off.
	Disabled bool `json:"disabled,omitempty"`
	// FailureRatio of failed invocations in a window trips the breaker.
	// Default 0.5.
	FailureRatio float64 `json:"failureRatio,omitempty" sluice:"nonzero"`
	// MinRequests in a window before the ratio counts. Default 20.
	MinRequests int `json:"minRequests,omitempty" sluice:"nonzero"`
	// OpenFor is how long the breaker stays open before probing. Default 30s.
	OpenFor Duration `json:"openFor,omitempty" sluice:"nonzero"`
	// Window is the period over which failures are counted. Default 10s.
	Window Duration `json:"window,omitempty" sluice:"nonzero"`
}

// DeadLetterSpec says where messages go when they cannot be handled.
type DeadLetterSpec struct {
	// Topic is the dead-letter topic. Default "<name>.dlq".
	Topic string `json:"topic,omitempty"`
}

// Timeout is the effective per-invocation timeout: http.timeout when set
// for an HTTP handler, else timeout.
func (s *Spec) InvocationTimeout() time.Duration {
	if s.HTTP != nil && s.HTTP.Timeout > 0 {
		return s.HTTP.Timeout.D()
	}
	return s.Timeout.D()
}

func (s *Spec) normalizePolicy() {
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultTimeout)
	}
	if s.Retry == nil {
		s.Retry = &RetrySpec{}
	}
	r := s.Retry
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.InitialBackoff == 0 {
		r.InitialBackoff = Duration(DefaultInitialBackoff)
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = Duration(DefaultMaxBackoff)
	}
	if r.Multiplier == 0 {
		r.Multiplier = DefaultMultiplier
	}
	if r.Jitter == "" {
		r.Jitter = JitterFull
	}
	if r.Mode == "" {
		r.Mode = RetryInPlace
	}
	if r.Mode == RetryTopics && len(r.Delays) == 0 {
		r.Delays = []Duration{Duration(10 * time.Second), Duration(time.Minute), Duration(10 * time.Minute)}
	}
	if s.Breaker == nil {
		s.Breaker = &BreakerSpec{}
	}
	b := s.Breaker
	if b.FailureRatio == 0 {
		b.FailureRatio = DefaultBreakerFailureRatio
	}
	if b.MinRequests == 0 {
		b.MinRequests = DefaultBreakerMinRequests
	}
	if b.OpenFor == 0 {
		b.OpenFor = Duration(DefaultBreakerOpenFor)
	}
	if b.Window == 0 {
		b.Window = Duration(DefaultBreakerWindow)
	}
	if s.DeadLetter == nil {
		s.DeadLetter = &DeadLetterSpec{}
	}
	if s.DeadLetter.Topic == "" {
		s.DeadLetter.Topic = DefaultDeadLetterTopic(s.Source, s.Name)
	}
}

// Bounds of a spec's durations, sizes and rates (docs/configuration.md
// lists them): each is a 400 naming the field past them.
const (
	MinTimeout          = time.Millisecond
	MaxTimeout          = 15 * time.Minute
	MaxBackoff          = time.Hour
	MaxRetryDelay       = 24 * time.Hour
	MaxBreakerDuration  = time.Hour
	MaxBreakerRequests  = 1_000_000
	MaxMaxInFlightBytes = 1 << 30
	MinRateLimit        = 0.001
	MaxRateLimit        = 1_000_000
)

// durationIn checks lo <= d <= hi.
func durationIn(field string, d Duration, lo, hi time.Duration) error {
	if d.D() < lo || d.D() > hi {
		return &FieldError{Field: field, Msg: fmt.Sprintf("must be between %s and %s, got %s", lo, hi, d.D())}
	}
	return nil
}

func (s *Spec) validatePolicy() error {
	if err := durationIn("timeout", s.Timeout, MinTimeout, MaxTimeout); err != nil {
		return err
	}
	if s.MaxInFlightBytes > MaxMaxInFlightBytes {
		return &FieldError{Field: "maxInFlightBytes", Msg: fmt.Sprintf("must be at most %d (1 GiB), got %d", MaxMaxInFlightBytes, s.MaxInFlightBytes)}
	}
	r := s.Retry
	switch {
	case r.MaxAttempts < 1 || r.MaxAttempts > 1000:
		return &FieldError{Field: "retry.maxAttempts", Msg: fmt.Sprintf("must be between 1 and 1000, got %d", r.MaxAttempts)}
	case durationIn("retry.initialBackoff", r.InitialBackoff, time.Millisecond, MaxBackoff) != nil:
		return durationIn("retry.initialBackoff", r.InitialBackoff, time.Millisecond, MaxBackoff)
	case durationIn("retry.maxBackoff", r.MaxBackoff, time.Millisecond, MaxBackoff) != nil:
		return durationIn("retry.maxBackoff", r.MaxBackoff, time.Millisecond, MaxBackoff)
	case r.MaxBackoff < r.InitialBackoff:
		return &FieldError{Field: "retry.maxBackoff", Msg: fmt.Sprintf("must be at least retry.initialBackoff (%s)", r.InitialBackoff.D())}
	case r.Multiplier < 1 || r.Multiplier > 100:
		return &FieldError{Field: "retry.multiplier", Msg: fmt.Sprintf("must be between 1 and 100, got %g", r.Multiplier)}
	case r.Jitter != JitterFull && r.Jitter != JitterNone:
		return &FieldError{Field: "retry.jitter", Msg: fmt.Sprintf("must be full or none, got %q", r.Jitter)}
	case r.Mode != RetryInPlace && r.Mode != RetryTopics:
		return &FieldError{Field: "retry.mode", Msg: fmt.Sprintf("must be inPlace or topics, got %q", r.Mode)}
	case r.Mode == RetryTopics && s.Ordering != OrderingNone:
		return &FieldError{Field: "retry.mode", Msg: "topics needs ordering: none (parking a message would reorder its key)"}
	case r.Mode == RetryInPlace && len(r.Delays) > 0:
		return &FieldError{Field: "retry.delays", Msg: "is only used with retry.mode: topics"}
	case len(r.Delays) > 10:
		return &FieldError{Field: "retry.delays", Msg: "at most 10 delay topics"}
	}
	for i, d := range r.Delays {
		if err := durationIn(fmt.Sprintf("retry.delays[%d]", i), d, time.Second, MaxRetryDelay); err != nil {
			return err
		}
	}
	b := s.Breaker
	switch {
	case b.FailureRatio <= 0 || b.FailureRatio > 1:
		return &FieldError{Field: "breaker.failureRatio", Msg: fmt.Sprintf("must be above 0 and at most 1, got %g", b.FailureRatio)}
	case b.MinRequests < 1 || b.MinRequests > MaxBreakerRequests:
		return &FieldError{Field: "breaker.minRequests", Msg: fmt.Sprintf("must be between 1 and %d, got %d", MaxBreakerRequests, b.MinRequests)}
	case durationIn("breaker.openFor", b.OpenFor, time.Millisecond, MaxBreakerDuration) != nil:
		return durationIn("breaker.openFor", b.OpenFor, time.Millisecond, MaxBreakerDuration)
	case durationIn("breaker.window", b.Window, time.Millisecond, MaxBreakerDuration) != nil:
		return durationIn("breaker.window", b.Window, time.Millisecond, MaxBreakerDuration)
	}
	if s.RateLimit != 0 && !(s.RateLimit >= MinRateLimit && s.RateLimit <= MaxRateLimit) {
		// 0 is none; NaN and negatives fail the test too.
		return &FieldError{Field: "rateLimit", Msg: fmt.Sprintf("must be 0 (none) or between %g and %g per second, got %g", MinRateLimit, float64(MaxRateLimit), s.RateLimit)}
	}
	if err := ValidateDeadLetterTopic("deadLetter.topic", s.Source, s.DeadLetter.Topic, s.Topic); err != nil {
		return err
	}
	return nil
}
