package metrics

import (
	"context"
	"errors"
	"fmt"
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

	// queueBacklog, when set, reads a queue handler's backlog from its
	// queue (SetQueueBacklog).
	queueBacklog func(ctx context.Context, spec handlers.Spec) (QueueBacklog, error)

	mu       sync.Mutex
	handlers map[string]*history
	fleet    []api.FleetPoint // the last 15 minutes, oldest first
}

// QueueBacklog is a queue handler's backlog as its queue says it: Waiting
// not yet delivered to the handler's group, Unacked delivered and not yet
// acknowledged; -1 where the queue does not say.
type QueueBacklog struct {
	Waiting, Unacked int64
	// Oldest is when the oldest message not yet finished was written;
	// zero when none is, or the queue cannot tell.
	Oldest time.Time
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
	lagAt  time.Time // when lag and oldest were last read
	// queue is a queue handler's backlog at queueAt (ok: read).
	queue   QueueBacklog
	queueOK bool
	queueAt time.Time

	// For the desired fleet size: the broker's totals at the last sample,
	// the smoothed rates, and the best per-node rate of the last 15m.
	ends, consumed   float64
	totalsAt         time.Time
	arrival, consume float64
	bestNode         float64
	bestAt           time.Time
	desired          int
	desiredReason    string
	desiredAt        time.Time
	members          int
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

// SetQueueBacklog sets how the sampler reads a queue handler's backlog
// (nats, amqp, redis, postgres). Without it queue handlers have none.
// Call it before Run.
func (s *Sampler) SetQueueBacklog(f func(ctx context.Context, spec handlers.Spec) (QueueBacklog, error)) {
	s.queueBacklog = f
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
		var bl backlogReading
		var qb QueueBacklog
		qok := false
		if src := t.Spec.Source; src == "" || src == handlers.SourceKafka {
			bl = s.backlog(ctx, t.Spec, now)
		} else if s.queueBacklog != nil {
			// A queue handler's backlog is its queue's; its topic name
			// may also be a Kafka topic's that is not its.
			qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			b, err := s.queueBacklog(qctx, t.Spec)
			cancel()
			qb, qok = b, err == nil
		}
		members := -1
		if bl.ok && !t.Paused {
			if _, ms, err := s.tc.GroupMembers(ctx, t.Spec.Group()); err == nil {
				members = len(ms)
			}
		}
		s.mu.Lock()
		p := api.SeriesPoint{Time: now, ConcurrencyLimit: st.Limit, InFlight: st.InFlight}
		if secs := now.Sub(h.lastAt).Seconds(); !h.lastAt.IsZero() && secs > 0 {
			p.RateIn = float64(sub(st.Received, h.last.Received)) / secs
			p.RateOut = float64(sub(st.Succeeded, h.last.Succeeded)+sub(st.DeadLettered, h.last.DeadLettered)) / secs
			p.ErrorRate = float64(sub(st.Failed, h.last.Failed)) / secs
		}
		p.P50Ms, p.P99Ms = h.lat.quantiles(0.5, 0.99)
		switch {
		case bl.ok:
			h.lag, h.oldest, h.lagAt = bl.lag, bl.oldest, now
		case now.Sub(h.lagAt) > 2*s.interval:
			// The broker has not answered for two samples: what was
			// measured then is no longer true, and showing it would be
			// showing an age that is not growing.
			h.lag, h.oldest = nil, 0
		}
		switch {
		case bl.ok:
			s.scale(h, t, st, bl, members, now)
		case t.Spec.Source != "" && t.Spec.Source != handlers.SourceKafka:
			h.desired = t.Spec.Scaling.Min()
			h.desiredReason = fmt.Sprintf("source %s: the fleet size is computed for Kafka handlers only; minNodes", t.Spec.Source)
			h.desiredAt = now
		}
		for _, parts := range h.lag {
			for _, l := range parts {
				p.Lag += l
			}
		}
		switch {
		case qok:
			h.queue, h.queueOK, h.queueAt = qb, true, now
		case now.Sub(h.queueAt) > 2*s.interval:
			h.queueOK = false
		}
		if h.queueOK {
			p.Lag = max(0, h.queue.Waiting)
			h.oldest = 0
			if !h.queue.Oldest.IsZero() {
				h.oldest = max(0, now.Sub(h.queue.Oldest).Seconds())
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
	fp := api.FleetPoint{Time: now}
	for _, h := range s.handlers {
		fp.Nodes = max(fp.Nodes, h.members)
		fp.Desired = max(fp.Desired, h.desired)
	}
	s.fleet = append(s.fleet, fp)
	if keep := int(15*time.Minute/s.interval) + 1; len(s.fleet) > keep {
		s.fleet = append(s.fleet[:0], s.fleet[len(s.fleet)-keep:]...)
	}
	s.mu.Unlock()
}

// FleetDesired is the fleet's desired size: the most any handler needs.
// active reports whether any handler has messages waiting or needs a node.
func (s *Sampler) FleetDesired(handler string) (desired int, active bool, found bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, h := range s.handlers {
		if handler != "" && name != handler {
			continue
		}
		found = true
		desired = max(desired, h.desired)
		// Active while messages wait, and while any handler wants a node
		// (minNodes above 0, or a queue handler whose backlog this node
		// does not read): only a fleet that needs no node may go to zero.
		if h.desired > 0 {
			active = true
		}
		for _, parts := range h.lag {
			for _, l := range parts {
				if l > 0 {
					active = true
				}
			}
		}
	}
	return desired, active, found
}

// FleetHistory returns the fleet's points over the last d, oldest first.
func (s *Sampler) FleetHistory(d time.Duration) []api.FleetPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := time.Now().Add(-d)
	out := []api.FleetPoint{}
	for _, p := range s.fleet {
		if !p.Time.Before(cut) {
			out = append(out, p)
		}
	}
	return out
}

func sub(a, b uint64) uint64 {
	if a < b { // the runner restarted
		return a
	}
	return a - b
}

// backlogReading is one reading of a handler's topics from the broker.
type backlogReading struct {
	ok     bool
	lag    map[string]map[int]int64
	oldest float64
	// ends is the sum of the log ends, consumed the sum of the positions
	// the group reads next, over the handler's topic and replay topic.
	ends, consumed float64
	// partitions of the handler's topic.
	partitions int
}

// backlog reads, from the broker, the group's lag per partition of the
// handler's topics and the age of the oldest unprocessed message: that of
// the message at the group's committed position (everything before it is
// finished). ok is false when the broker cannot be read.
func (s *Sampler) backlog(ctx context.Context, spec handlers.Spec, now time.Time) backlogReading {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r := backlogReading{lag: map[string]map[int]int64{}}
	for i, topic := range []string{spec.Topic, spec.ReplayTopic()} {
		parts, err := s.tc.GroupLag(ctx, spec.Group(), topic, i == 0 && spec.StartFrom == handlers.StartLatest)
		if err != nil {
			if i > 0 && errors.Is(err, topics.ErrUnknownTopic) {
				continue
			}
			return backlogReading{}
		}
		if i == 0 {
			r.partitions = len(parts)
		}
		lags := make(map[int]int64, len(parts))
		for _, p := range parts {
			lags[p.Partition] = p.Lag
			r.ends += float64(p.End)
			r.consumed += float64(p.End - p.Lag)
			if p.Lag > 0 {
				next := p.End - p.Lag
				_ = s.tc.Read(ctx, topic, p.Partition, next, next+1, func(m topics.Message) bool {
					if age := now.Sub(m.Time).Seconds(); age > r.oldest {
						r.oldest = age
					}
					return false
				})
			}
		}
		r.lag[topic] = lags
	}
	r.ok = true
	return r
}

// scale updates the handler's rates and its desired fleet size from a
// reading. Called with s.mu held.
func (s *Sampler) scale(h *history, t Target, st consumers.Status, bl backlogReading, members int, now time.Time) {
	if secs := now.Sub(h.totalsAt).Seconds(); !h.totalsAt.IsZero() && secs > 0 {
		arrival := math.Max(0, (bl.ends-h.ends)/secs)
		consume := math.Max(0, (bl.consumed-h.consumed)/secs)
		// Smoothed over about two samples: commits land once a second and
		// samples are not aligned with them.
		h.arrival, h.consume = smooth(h.arrival, arrival), smooth(h.consume, consume)
	}
	h.ends, h.consumed, h.totalsAt = bl.ends, bl.consumed, now
	var backlog float64
	for _, parts := range bl.lag {
		for _, l := range parts {
			backlog += float64(l)
		}
	}
	if now.Sub(h.bestAt) > 15*time.Minute {
		h.bestNode = 0
	}
	sc := t.Spec.Scaling
	in := scaleInput{Backlog: backlog, ArrivalRate: h.arrival, ConsumedRate: h.consume, BestNodeRate: h.bestNode,
		Members: max(members, 0), Partitions: bl.partitions, Min: sc.Min(), Max: sc.MaxNodes}
	in.MaxAge = sc.MaxAge.D()
	in.OldestAge = time.Duration(bl.oldest * float64(time.Second))
	in.BreakerOpen = st.Breaker != nil && st.Breaker.State == "open"
	if st.Limit > 0 {
		in.Saturation = math.Min(1, float64(st.InFlight)/float64(st.Limit))
	}
	switch {
	case t.Paused:
		h.desired, h.desiredReason = 0, "paused"
	case members < 0:
		// The group could not be described: keep the last answer.
	default:
		h.members = members
		n, reason, nodeRate := desiredNodes(in)
		if nodeRate > h.bestNode {
			h.bestNode, h.bestAt = nodeRate, now
		}
		h.desired, h.desiredReason = n, reason
	}
	h.desiredAt = now
}

// smooth averages a rate over about two samples, except that a sample with
// nothing in it is believed at once: a stream that stopped has stopped.
func smooth(prev, cur float64) float64 {
	if cur == 0 {
		return 0
	}
	return 0.5*prev + 0.5*cur
}

// Desired returns the fleet size the handler needs and why, false before
// the first reading.
func (s *Sampler) Desired(name string) (int, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.handlers[name]
	if !ok || h.desiredAt.IsZero() {
		return 0, "", false
	}
	return h.desired, h.desiredReason, true
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

// Queue returns the last backlog read from a queue handler's queue, false
// when there is none (not a queue handler, or the queue has not answered
// for two samples).
func (s *Sampler) Queue(name string) (QueueBacklog, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.handlers[name]
	if !ok || !h.queueOK {
		return QueueBacklog{}, false
	}
	return h.queue, true
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
