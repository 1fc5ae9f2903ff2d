package metrics

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// Target is one registered handler as the sampler sees it.
type Target struct {
	Spec   handlers.Spec
	Paused bool
	// Runner is this node's runner of the handler, nil when it runs none.
	Runner *consumers.Runner
}

// Sampler measures every handler each interval: rates from the runner's
// counters, latency quantiles from invocations finished in the interval,
// and, from the broker, lag per partition and the age of the oldest
// unprocessed message. It keeps the last hour for the dashboard.
type Sampler struct {
	tc       *topics.Client
	targets  func() []Target
	interval time.Duration
	keep     int

	mu       sync.Mutex
	handlers map[string]*history
}

type history struct {
	lat    latencies
	points []api.SeriesPoint // ring, oldest first after ordering
	next   int
	full   bool
	last   consumers.Status
	lastAt time.Time
	lag    map[string]map[int]int64
	oldest float64
}

// DefaultSampleInterval is how often the sampler samples unless configured.
const DefaultSampleInterval = 5 * time.Second

// NewSampler samples targets every interval (default DefaultSampleInterval).
func NewSampler(tc *topics.Client, targets func() []Target, interval time.Duration) *Sampler {
	if interval <= 0 {
		interval = DefaultSampleInterval
	}
	return &Sampler{tc: tc, targets: targets, interval: interval, keep: int(time.Hour / interval), handlers: map[string]*history{}}
}

// Run samples until ctx is done.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.SampleOnce(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.SampleOnce(ctx)
		}
	}
}

func (s *Sampler) get(name string) *history {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.handlers[name]
	if !ok {
		h = &history{points: make([]api.SeriesPoint, s.keep)}
		s.handlers[name] = h
	}
	return h
}

// latencies returns the latency record of handler name, for hooks to
// write to without a lookup per message.
func (s *Sampler) latencies(name string) *latencies { return &s.get(name).lat }

// SampleOnce takes one sample of every target now.
func (s *Sampler) SampleOnce(ctx context.Context) {
	now := time.Now()
	live := map[string]bool{}
	for _, t := range s.targets() {
		live[t.Spec.Name] = true
		h := s.get(t.Spec.Name)
		var st consumers.Status
		if t.Runner != nil {
			st = t.Runner.Status()
		}
		lag, oldest := s.backlog(ctx, t.Spec, now)
		s.mu.Lock()
		p := api.SeriesPoint{Time: now, ConcurrencyLimit: st.Limit, InFlight: st.InFlight}
		if secs := now.Sub(h.lastAt).Seconds(); !h.lastAt.IsZero() && secs > 0 {
			p.RateIn = float64(sub(st.Received, h.last.Received)) / secs
			p.RateOut = float64(sub(st.Succeeded, h.last.Succeeded)+sub(st.DeadLettered, h.last.DeadLettered)) / secs
			p.ErrorRate = float64(sub(st.Failed, h.last.Failed)) / secs
		}
		p.P50Ms, p.P99Ms = h.lat.quantiles(0.5, 0.99)
		if lag != nil {
			h.lag, h.oldest = lag, oldest
		}
		for _, parts := range h.lag {
			for _, l := range parts {
				p.Lag += l
			}
		}
		p.OldestAgeSeconds = h.oldest
		h.last, h.lastAt = st, now
		h.points[h.next] = p
		h.next = (h.next + 1) % len(h.points)
		if h.next == 0 {
			h.full = true
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	for name := range s.handlers {
		if !live[name] {
			delete(s.handlers, name)
		}
	}
	s.mu.Unlock()
}

func sub(a, b uint64) uint64 {
	if a < b { // the runner restarted
		return a
	}
	return a - b
}

// backlog reads, from the broker, the group's lag per partition of the
// handler's topics and the age of the oldest unprocessed message. It
// returns nil when the broker cannot be read.
func (s *Sampler) backlog(ctx context.Context, spec handlers.Spec, now time.Time) (map[string]map[int]int64, float64) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out := map[string]map[int]int64{}
	oldest := 0.0
	for i, topic := range []string{spec.Topic, spec.ReplayTopic()} {
		parts, err := s.tc.GroupLag(ctx, spec.Group(), topic, i == 0 && spec.StartFrom == handlers.StartLatest)
		if err != nil {
			if i > 0 && errors.Is(err, topics.ErrUnknownTopic) {
				continue
			}
			return nil, 0
		}
		lags := make(map[int]int64, len(parts))
		for _, p := range parts {
			lags[p.Partition] = p.Lag
			if p.Lag > 0 {
				next := p.End - p.Lag
				_ = s.tc.Read(ctx, topic, p.Partition, next, next+1, func(m topics.Message) bool {
					if age := now.Sub(m.Time).Seconds(); age > oldest {
						oldest = age
					}
					return false
				})
			}
		}
		out[topic] = lags
	}
	return out, oldest
}

// Series returns handler name's samples, oldest first, over the last d.
func (s *Sampler) Series(name string, d time.Duration) api.Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := api.Series{IntervalSeconds: s.interval.Seconds(), Points: []api.SeriesPoint{}}
	h, ok := s.handlers[name]
	if !ok {
		return out
	}
	cut := time.Now().Add(-d)
	n := len(h.points)
	start := 0
	if h.full {
		start = h.next
	}
	for i := 0; i < n; i++ {
		p := h.points[(start+i)%n]
		if p.Time.IsZero() || p.Time.Before(cut) {
			continue
		}
		out.Points = append(out.Points, p)
	}
	return out
}

// Latest returns the newest sample of name, and the lag per partition.
func (s *Sampler) Latest(name string) (api.SeriesPoint, map[string]map[int]int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.handlers[name]
	if !ok || (h.next == 0 && !h.full) {
		return api.SeriesPoint{}, nil, false
	}
	i := (h.next - 1 + len(h.points)) % len(h.points)
	return h.points[i], h.lag, true
}

// latencies is a log-scale histogram of durations (about 19% wide buckets
// from 10µs to about 10 minutes), read and reset once per sample.
type latencies struct {
	buckets [100]atomic.Uint64
}

const (
	latBase   = 10 * time.Microsecond
	latGrowth = 1.2
)

var latLog = math.Log(latGrowth)

func (l *latencies) observe(d time.Duration) {
	i := 0
	if d > latBase {
		i = int(math.Log(float64(d)/float64(latBase))/latLog) + 1
	}
	l.buckets[min(i, len(l.buckets)-1)].Add(1)
}

// quantiles returns the two quantiles, in milliseconds (the upper bound of
// their bucket), of what was observed since the last call, and resets.
func (l *latencies) quantiles(q1, q2 float64) (float64, float64) {
	qs := [2]float64{q1, q2}
	var counts [100]uint64
	var total uint64
	for i := range l.buckets {
		counts[i] = l.buckets[i].Swap(0)
		total += counts[i]
	}
	var res [2]float64
	if total == 0 {
		return 0, 0
	}
	for qi, q := range qs {
		rank := uint64(math.Ceil(q * float64(total)))
		var seen uint64
		for i, c := range counts {
			seen += c
			if seen >= rank {
				upper := float64(latBase) * math.Pow(latGrowth, float64(i))
				res[qi] = upper / float64(time.Millisecond)
				break
			}
		}
	}
	return res[0], res[1]
}
