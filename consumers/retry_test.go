package consumers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		permanent bool
		outage    bool
		after     time.Duration
		status    int
	}{
		{"500", &handlers.HTTPError{StatusCode: 500}, false, true, 0, 500},
		{"503 with Retry-After", &handlers.HTTPError{StatusCode: 503, RetryAfter: 3 * time.Second}, false, true, 3 * time.Second, 503},
		{"502 ignores Retry-After", &handlers.HTTPError{StatusCode: 502, RetryAfter: 3 * time.Second}, false, true, 0, 502},
		{"429", &handlers.HTTPError{StatusCode: 429, RetryAfter: 2 * time.Second}, false, true, 2 * time.Second, 429},
		{"408", &handlers.HTTPError{StatusCode: 408}, false, true, 0, 408},
		{"400", &handlers.HTTPError{StatusCode: 400}, true, false, 0, 400},
		{"404", &handlers.HTTPError{StatusCode: 404}, true, false, 0, 404},
		{"timeout", &handlers.TimeoutError{After: time.Second}, false, true, 0, 0},
		{"deadline", fmt.Errorf("calling: %w", context.DeadlineExceeded), false, true, 0, 0},
		{"connection refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, false, true, 0, 0},
		{"Go error", errors.New("db is down"), false, true, 0, 0},
		{"Go permanent", handlers.Permanent(errors.New("bad order")), true, false, 0, 0},
		{"wrapped permanent", fmt.Errorf("handling: %w", handlers.Permanent(errors.New("bad"))), true, false, 0, 0},
		{"panic", &handlers.PanicError{Value: "boom"}, false, false, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := classify(c.err)
			if v.permanent != c.permanent || v.outage != c.outage || v.retryAfter != c.after || v.status != c.status {
				t.Fatalf("classify(%v) = %+v", c.err, v)
			}
		})
	}
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	r := &handlers.RetrySpec{InitialBackoff: handlers.Duration(100 * time.Millisecond), MaxBackoff: handlers.Duration(time.Second),
		Multiplier: 2, Jitter: handlers.JitterNone}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := backoff(r, i+1); got != w*time.Millisecond {
			t.Fatalf("attempt %d: %s, want %s", i+1, got, w*time.Millisecond)
		}
	}
	r.Jitter = handlers.JitterFull
	for i := 0; i < 1000; i++ {
		if got := backoff(r, 3); got < 0 || got > 400*time.Millisecond {
			t.Fatalf("full jitter gave %s, outside [0, 400ms]", got)
		}
	}
	// A huge attempt count must not overflow.
	if got := backoff(&handlers.RetrySpec{InitialBackoff: handlers.Duration(time.Second), MaxBackoff: handlers.Duration(time.Minute), Multiplier: 100, Jitter: handlers.JitterNone}, 500); got != time.Minute {
		t.Fatalf("overflow: %s", got)
	}
}
