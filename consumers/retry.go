package consumers

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// maxRetryAfter caps the wait an endpoint may ask for with Retry-After, so
// one answer cannot hold a key (and its in-flight slot) for hours.
const maxRetryAfter = 10 * time.Minute

// verdict is what a failed invocation means for the message.
type verdict struct {
	// permanent: retrying cannot help; dead-letter now.
	permanent bool
	// outage: a sign the downstream is unwell (5xx, 408, 429, timeouts,
	// connection errors, a Go handler's plain error); these feed the
	// circuit breaker and, while it is open, are not charged as attempts.
	outage bool
	// retryAfter is the least wait the endpoint asked for.
	retryAfter time.Duration
	// status is the HTTP status, if there was one.
	status int
}

// classify is the one place that decides retryable versus permanent.
func classify(err error) verdict {
	if handlers.IsPermanent(err) {
		return verdict{permanent: true}
	}
	var he *handlers.HTTPError
	if errors.As(err, &he) {
		v := verdict{status: he.StatusCode}
		switch {
		case he.StatusCode >= 500, he.StatusCode == http.StatusRequestTimeout:
			v.outage = true
		case he.StatusCode == http.StatusTooManyRequests:
			v.outage = true
		default: // other 4xx: the message itself is wrong
			v.permanent = true
		}
		if he.StatusCode == http.StatusTooManyRequests || he.StatusCode == http.StatusServiceUnavailable {
			v.retryAfter = min(he.RetryAfter, maxRetryAfter)
		}
		return v
	}
	var te *handlers.TimeoutError
	var ne net.Error
	var pe *handlers.PanicError
	switch {
	case errors.Is(err, handlers.ErrReportedFailed):
		// The endpoint answered and named this message: its own failure.
		return verdict{}
	case errors.As(err, &te), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return verdict{outage: true}
	case errors.As(err, &pe):
		// A panic is a bug in the handler, not a downstream outage.
		return verdict{}
	}
	return verdict{outage: true}
}

// backoff is the wait before attempt+1, after attempt failed attempts:
// initial * multiplier^(attempt-1), capped, with full jitter unless off.
func backoff(r *handlers.RetrySpec, attempt int) time.Duration {
	d := float64(r.InitialBackoff.D()) * math.Pow(r.Multiplier, float64(attempt-1))
	if max := float64(r.MaxBackoff.D()); d > max || math.IsInf(d, 0) || math.IsNaN(d) {
		d = max
	}
	if r.Jitter == handlers.JitterFull {
		d = rand.Float64() * d
	}
	return time.Duration(d)
}
