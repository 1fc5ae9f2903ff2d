package consumers

import (
	"math"
	"sync"
	"time"
)

// adaptive is the concurrency limiter of a handler with concurrency
// {min, max}. It climbs on throughput, not on latency.
//
// Why: a latency-based limiter (Vegas, gradient) cannot tell the
// downstream's queue from its own. On a node whose CPU is busy with the
// invocations themselves, or shared with the endpoint, latency grows with
// the limit long before the downstream is saturated: a Vegas limiter
// settled at 25 where a fixed 512 delivered 7 times as much (issue 10).
// The delivery rate does not lie that way: a higher limit is worth it
// exactly while it raises the rate, whatever the cause of the latency.
// A bandwidth-delay estimate (BBR's btlBw × minRTT) was tried first and
// failed the same way: the engine's own time per message is not in the
// invocation's latency, so the product came out at half the useful limit.
//
// Three modes, decided once per window (AdaptWindow, 250ms by default) in
// which a backlog kept every slot busy:
//
//   - startup: the limit doubles every window until two windows in a
//     row fail to raise the rate by a quarter, then falls back to the
//     lowest limit that came within 15% of the best rate; from 1 to 512 in
//     under 3 seconds.
//   - steady: a hill climb. The rate is measured at the limit (4 windows),
//     then at 1.2× (3 windows): 4% more rate, and more than 1.5 standard
//     errors of the difference of the two means, moves the limit up and
//     probes again from there. Otherwise it tries 0.83×: losing under 4%
//     of the rate moves the limit down and probes lower. So the limit settles at
//     the knee of the rate curve, where more concurrency only adds
//     queueing: a downstream that serves 40 at once settles between 40
//     and 50 in simulation, a smooth curve at 83-96% of the rate of max. The
//     first window after each change is not measured: it is still filling
//     or draining. A window spans at least two invocations, so a slow
//     handler (hundreds of milliseconds) settles proportionally slower.
//   - outage failures (timeouts, 429, 503, 5xx) in a window cut the limit
//     by 30%; once a window passes without them, startup finds the
//     capacity again.
//
// A limit that is not used decays towards min.
type adaptive struct {
	min, max float64
	window   time.Duration

	mu      sync.Mutex
	limit   float64
	start   time.Time
	done    int // successful invocations in the window
	samples int // invocations of any outcome in the window
	sumRTT  time.Duration
	drops   int
	rtt     time.Duration // the mean latency of the last window that had any

	mode adaptMode
	idle int // windows in a row without a backlog
	// startup
	best    float64
	stalls  int
	climbed []ratedLimit // each limit of this startup with its rate
	// steady
	home     float64 // the limit the climb holds between probes
	ref      float64 // the rate at home
	measured float64 // the sum of the measured windows' rates in this phase
	squares  float64 // and of their squares
	windows  int     // windows seen in this phase, the first not measured
	refVar   float64 // the variance of the mean rate at home
}

type ratedLimit struct{ limit, rate float64 }

type adaptMode int

const (
	adaptStartup adaptMode = iota
	adaptBase              // measuring the rate at home
	adaptUp                // measuring the rate at 1.25 × home
	adaptDown              // measuring the rate at 0.8 × home
)

// Steady-state probe sizes and the rate changes that decide them, chosen
// with the models of adaptive_sim_test.go (±10% noise in each window's
// rate): larger probes hurt the latency at a knee, smaller thresholds
// follow the noise.
const (
	probeUp, probeDown = 1.2, 0.83
	upGain, downLoss   = 1.04, 0.96
	baseWindows        = 4 // measured windows at home
	probeWindows       = 3 // measured windows of a probe
)

func newAdaptive(min, max int, window time.Duration) *adaptive {
	if window <= 0 {
		window = 250 * time.Millisecond
	}
	return &adaptive{min: float64(min), max: float64(max), window: window, limit: float64(min), start: time.Now()}
}

// observe records one finished invocation; ok marks a success, outage a
// failure that says the downstream is struggling.
func (a *adaptive) observe(rtt time.Duration, ok, outage bool) {
	a.mu.Lock()
	a.samples++
	a.sumRTT += rtt
	if ok {
		a.done++
	}
	if outage {
		a.drops++
	}
	a.mu.Unlock()
}

// due reports whether the window can close at now: the caller then reads
// the window's peak in flight and calls update.
func (a *adaptive) due(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dueLocked(now)
}

// dueLocked is due with a.mu held. A window spans at least two average
// invocations (measured over the windows before, so that a window in which
// nothing finished still knows), so a slow handler's rate is not read from
// a handful of completions.
func (a *adaptive) dueLocked(now time.Time) bool {
	return now.Sub(a.start) >= max(a.window, 2*a.rtt)
}

// update closes the window if it is due and returns the new limit. peak
// is the most messages that were in flight during the window.
func (a *adaptive) update(now time.Time, peak int) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.dueLocked(now) {
		return int(math.Round(a.limit)), false
	}
	elapsed := now.Sub(a.start)
	if a.samples > 0 {
		a.rtt = a.sumRTT / time.Duration(a.samples)
	}
	saturated := float64(peak) >= a.limit-0.5
	if saturated && a.samples == 0 {
		// Every slot busy and nothing finished: no rate to read yet (a
		// slow handler's first calls). A hung downstream is cut back
		// through its timeouts, which are outages.
		return int(math.Round(a.limit)), false
	}
	rate := float64(a.done) / elapsed.Seconds()
	l := a.limit
	switch {
	case a.drops > 0:
		l *= 0.7
		a.restart()
	case !saturated:
		// No backlog held the limit: the rate says nothing about capacity.
		a.idle++
		if a.samples == 0 || float64(peak) < l/2 {
			l = math.Max(l*0.9, float64(peak)*2)
		}
		if a.idle >= 4 {
			a.restart()
		}
	default:
		a.idle = 0
		l = a.step(l, rate)
	}
	a.limit = math.Min(a.max, math.Max(a.min, l))
	a.start, a.done, a.samples, a.sumRTT, a.drops = now, 0, 0, 0, 0
	return int(math.Round(a.limit)), true
}

// restart goes back to startup from the current limit.
func (a *adaptive) restart() {
	a.mode, a.best, a.stalls, a.climbed = adaptStartup, 0, 0, a.climbed[:0]
}

// step is one saturated window at limit l with the given rate; it returns
// the next limit.
func (a *adaptive) step(l, rate float64) float64 {
	if a.mode == adaptStartup {
		a.climbed = append(a.climbed, ratedLimit{l, rate})
		if rate >= 1.25*a.best {
			a.best, a.stalls = rate, 0
		} else {
			a.best = max(a.best, rate)
			a.stalls++
		}
		if a.stalls < 2 && l < a.max {
			return l * 2
		}
		// The lowest limit that came within 15% of the best rate (the
		// noise of two windows on a busy machine): the
		// climb refines it.
		a.home = l
		for _, c := range a.climbed {
			if c.rate >= 0.85*a.best && c.limit < a.home {
				a.home = c.limit
			}
		}
		a.enter(adaptBase)
		return a.home
	}
	a.windows++
	if a.windows == 1 {
		return l // filling or draining after the change
	}
	a.measured += rate
	a.squares += rate * rate
	n := baseWindows
	if a.mode != adaptBase {
		n = probeWindows
	}
	if a.windows-1 < n {
		return l
	}
	r := a.measured / float64(n)
	// The variance of the phase's mean rate, from its windows' spread.
	v := max(0, a.squares/float64(n)-r*r) / float64(n-1)
	switch a.mode {
	case adaptBase:
		a.ref, a.refVar = r, v
		a.enter(adaptUp)
		return a.above(a.home)
	case adaptUp:
		// A step up must pay, by more than the noise of the two means: on
		// a busy machine the climb holds rather than follows the noise.
		if r >= upGain*a.ref && r-a.ref > 1.5*math.Sqrt(v+a.refVar) && l > a.home {
			a.home, a.ref, a.refVar = l, r, v // worth it: climb on from here
			a.enter(adaptUp)
			return a.above(l)
		}
		a.enter(adaptDown)
		return a.below(a.home)
	default: // adaptDown
		if r >= downLoss*a.ref && l < a.home {
			a.home = l // as good for less: keep going down, against the same rate
			a.enter(adaptDown)
			return a.below(l)
		}
		a.enter(adaptBase)
		return a.home
	}
}

func (a *adaptive) enter(m adaptMode) {
	a.mode, a.measured, a.squares, a.windows = m, 0, 0, 0
}

// above and below are the probe limits around l, at least one away.
func (a *adaptive) above(l float64) float64 {
	return math.Min(a.max, math.Max(l+1, math.Round(l*probeUp)))
}

func (a *adaptive) below(l float64) float64 {
	return math.Max(a.min, math.Min(l-1, math.Round(l*probeDown)))
}
