package consumers

import (
	"math"
	"sync"
	"time"
)

// adaptive is the concurrency limiter of a handler with concurrency
// {min, max}. It is a TCP-Vegas-style limiter, as in Netflix's
// concurrency-limits and Uber's consumer proxy: from the lowest latency
// seen recently (the downstream's no-load latency) and the average latency
// of a window, it estimates how many invocations are queueing downstream
// (limit × (1 − minRTT/avgRTT)). Few queued and the limit was reached: grow.
// Many queued: shrink. Outage failures (timeouts, 429, 503, 5xx) in a
// window cut the limit multiplicatively, like AIMD. A limit that is not
// used decays towards min. Vegas was chosen over a pure gradient because it
// settles at the knee of the latency curve instead of drifting with it, and
// over pure AIMD because it reacts to latency before errors appear.
type adaptive struct {
	min, max float64
	window   time.Duration

	mu       sync.Mutex
	limit    float64
	start    time.Time
	samples  int
	sum      time.Duration
	winMin   time.Duration
	drops    int
	minRTT   time.Duration
	minRTTAt time.Time
}

func newAdaptive(min, max int, window time.Duration) *adaptive {
	if window <= 0 {
		window = 250 * time.Millisecond
	}
	return &adaptive{min: float64(min), max: float64(max), window: window, limit: float64(min), start: time.Now()}
}

// observe records one finished invocation; outage marks a failure that
// says the downstream is struggling.
func (a *adaptive) observe(rtt time.Duration, outage bool) {
	a.mu.Lock()
	a.samples++
	a.sum += rtt
	if a.winMin == 0 || rtt < a.winMin {
		a.winMin = rtt
	}
	if outage {
		a.drops++
	}
	a.mu.Unlock()
}

// update closes the window if it is due and returns the new limit. peak
// is the most messages that were in flight during the window.
func (a *adaptive) update(now time.Time, peak int) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.start) < a.window {
		return int(a.limit), false
	}
	saturated := float64(peak) >= a.limit-0.5
	l := a.limit
	switch {
	case a.drops > 0:
		l *= 0.7
	case a.samples == 0:
		if !saturated {
			l *= 0.9 // idle: settle towards min
		}
	default:
		if a.minRTT == 0 || a.winMin < a.minRTT || now.Sub(a.minRTTAt) > 30*time.Second {
			a.minRTT, a.minRTTAt = a.winMin, now
		}
		avg := a.sum / time.Duration(a.samples)
		queue := l * (1 - float64(a.minRTT)/float64(avg))
		alpha := 3 * math.Max(1, math.Log10(l))
		beta := 2 * alpha
		switch {
		case float64(avg) > 2*float64(a.minRTT):
			l *= 0.9
		case queue > beta:
			l -= math.Max(1, math.Log10(l))
		case queue < alpha && saturated:
			l += math.Max(1, math.Sqrt(l))
		case !saturated && float64(peak) < l/2:
			l = math.Max(l*0.9, float64(peak)*2)
		}
	}
	a.limit = math.Min(a.max, math.Max(a.min, l))
	a.start, a.samples, a.sum, a.winMin, a.drops = now, 0, 0, 0, 0
	return int(math.Round(a.limit)), true
}
