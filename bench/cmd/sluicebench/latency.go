package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/topics"
)

// The latency scenario: Sluice alone, with a Go no-op handler, fed at a
// fixed rate while it runs; each message carries the time it was
// published, and the handler records how long ago that was when it
// starts. The figure is publish (just before the produce request) to
// handler start, so it includes the produce round trip and the fetch.
const (
	latencyRate        = 2000                 // messages a second
	latencyTick        = 5 * time.Millisecond // the producer publishes latencyRate*latencyTick (10) messages a tick
	latencyMaxBurst    = 100                  // at most this many at once when making up for a late tick
	latencyWarmup      = 2 * time.Second      // published but not recorded
	latencyConcurrency = 64
	latencyDrain       = 10 * time.Second // after the last publish, how long to wait for the recorded messages
	headerSentAt       = "sent-at"        // the publish time, unix nanoseconds in decimal
)

// latencyStats are one latency run's figures.
type latencyStats struct {
	published  int           // messages published within the recording window
	window     time.Duration // the recording window
	unreadable int64         // messages without a readable sent-at header
	p50        time.Duration
	p99        time.Duration
	p999       time.Duration
	max        time.Duration
}

// rate is the publishing rate achieved over the window.
func (s *latencyStats) rate() float64 {
	if s.window <= 0 {
		return 0
	}
	return float64(s.published) / s.window.Seconds()
}

// latencyRecorder keeps the latency of each message published within
// [from, until), as unix nanoseconds of its sent-at header. It is safe for
// concurrent use.
type latencyRecorder struct {
	from, until atomic.Int64
	unreadable  atomic.Int64
	mu          sync.Mutex
	lat         []time.Duration
}

func (r *latencyRecorder) observe(m *sluice.Message, now time.Time) {
	v, ok := m.Header(headerSentAt)
	sent, err := strconv.ParseInt(string(v), 10, 64)
	if !ok || err != nil {
		r.unreadable.Add(1)
		return
	}
	if sent < r.from.Load() || sent >= r.until.Load() {
		return
	}
	d := time.Duration(now.UnixNano() - sent)
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

func (r *latencyRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lat)
}

// sorted returns a sorted copy of the recorded latencies.
func (r *latencyRecorder) sorted() []time.Duration {
	r.mu.Lock()
	lat := slices.Clone(r.lat)
	r.mu.Unlock()
	slices.Sort(lat)
	return lat
}

// percentile is the nearest-rank q-quantile of sorted latencies.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// latencyRounds runs the latency scenario once per round, each on a new
// topic with a new handler, so that no round reads another's messages.
func (b *bench) latencyRounds(ctx context.Context) ([]result, error) {
	var out []result
	for round := 1; round <= b.opts.rounds; round++ {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		r := b.latency(ctx, round)
		fmt.Fprintf(b.out, "  %-6s %-12s round %d: %s\n", r.family.name, r.peer, round, r.summary())
		out = append(out, r)
	}
	return out, nil
}

func (b *bench) latency(ctx context.Context, round int) result {
	f := family{name: "latency", topic: fmt.Sprintf("bench.latency.%d", round), keys: b.opts.keys,
		limit: b.opts.latencyDur, peers: []string{peerSluiceKey}, concurrency: latencyConcurrency}
	res := result{family: f, peer: peerSluiceKey, round: round}
	tc, err := topics.New(topics.Config{Brokers: b.brokers, Partitions: b.opts.partitions})
	if err == nil {
		err = tc.Create(ctx, f.topic, b.opts.partitions, nil)
	}
	if err != nil {
		res.err = fmt.Errorf("creating %s: %w", f.topic, err)
		return res
	}

	rec := &latencyRecorder{}
	app, err := sluice.New(
		sluice.WithBrokers(b.brokers...),
		sluice.WithHTTPAddr("127.0.0.1:0"),
		sluice.WithLogger(b.log),
	)
	if err != nil {
		res.err = err
		return res
	}
	// Built from its JSON form, as in runSluice.
	var spec sluice.Spec
	js, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("bench-latency-%d", round), "topic": f.topic,
		"ordering": "key", "concurrency": f.concurrency})
	if err := json.Unmarshal(js, &spec); err != nil {
		res.err = fmt.Errorf("handler spec: %w", err)
		return res
	}
	err = app.Handle(spec, func(_ context.Context, m *sluice.Message) error {
		rec.observe(m, time.Now())
		return nil
	})
	if err != nil {
		res.err = err
		return res
	}

	runtime.GC()
	b.waitQuiet(ctx)
	stopProfile := b.startProfile(f, res.peer, round)
	defer stopProfile()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	select {
	case <-app.Started():
	case err := <-done:
		res.err = fmt.Errorf("did not start: %w", err)
		return res
	case <-time.After(startTimeout):
		res.err = fmt.Errorf("did not start within %s", startTimeout)
	case <-ctx.Done():
		res.err = ctx.Err()
	}

	if res.err == nil {
		start := time.Now()
		from, until := start.Add(latencyWarmup), start.Add(latencyWarmup+b.opts.latencyDur)
		rec.from.Store(from.UnixNano())
		rec.until.Store(until.UnixNano())
		pub := b.publish(ctx, tc, f.topic, start, from.UnixNano(), until.UnixNano())
		res.err = pub.err
		res.cpu, res.others = pub.cpu, pub.others
		res.wall = until.Sub(from)

		// Wait for the last messages recorded to be handled.
		wait := time.NewTicker(10 * time.Millisecond)
		deadline := time.Now().Add(latencyDrain)
		for rec.count() < pub.published && time.Now().Before(deadline) && ctx.Err() == nil {
			<-wait.C
		}
		wait.Stop()

		lat := rec.sorted()
		res.processed = int64(len(lat))
		res.lat = &latencyStats{
			published: pub.published, window: res.wall, unreadable: rec.unreadable.Load(),
			p50: percentile(lat, 0.50), p99: percentile(lat, 0.99), p999: percentile(lat, 0.999), max: percentile(lat, 1),
		}
		if len(lat) < pub.published && res.err == nil {
			res.err = fmt.Errorf("%d of %d messages not handled within %s of the last publish", pub.published-len(lat), pub.published, latencyDrain)
		}
	}
	stopProfile()

	cancel()
	stopAt := time.Now()
	select {
	case err := <-done:
		if err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("stopping: %w", err))
		}
	case <-time.After(stopTimeout):
		res.err = errors.Join(res.err, fmt.Errorf("did not stop within %s", stopTimeout))
	}
	res.stopTook = time.Since(stopAt)
	if res.lat == nil {
		res.lat = &latencyStats{}
	}
	return res
}

// publishResult is what publish did within the recording window.
type publishResult struct {
	published int           // messages stamped within the window
	cpu       time.Duration // this process's CPU time over the window
	others    time.Duration // other processes' CPU time over the window
	err       error
}

// publish sends latencyRate messages a second, a tick's share at a time,
// from start until the window [from, until) (unix nanoseconds) has passed,
// each stamped with the time just before its produce request. A tick that
// comes late (a slow produce) is made up on the next, so the rate holds.
func (b *bench) publish(ctx context.Context, tc *topics.Client, topic string, start time.Time, from, until int64) publishResult {
	var p publishResult
	value := make([]byte, b.opts.size)
	_, _ = rand.Read(value)
	keys := make([][]byte, b.opts.keys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%06d", i)
	}
	var (
		sent        int
		inside      bool
		cpu0, busy0 time.Duration
	)
	tick := time.NewTicker(latencyTick)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			p.err = ctx.Err()
			return p
		}
		now := time.Now()
		if !inside && now.UnixNano() >= from {
			inside = true
			cpu0, busy0 = processCPU(), machineBusy()
		}
		if now.UnixNano() >= until {
			break
		}
		n := min(int(now.Sub(start).Seconds()*latencyRate)-sent, latencyMaxBurst)
		if n <= 0 {
			continue
		}
		at := time.Now().UnixNano()
		stamp := []kafka.Header{{Key: headerSentAt, Value: strconv.AppendInt(nil, at, 10)}}
		recs := make([]topics.Record, n)
		for i := range recs {
			recs[i] = topics.Record{Key: keys[(sent+i)%len(keys)], Value: value, Headers: stamp, Partition: -1}
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := tc.Produce(pctx, topic, recs)
		cancel()
		if err != nil {
			p.err = fmt.Errorf("publishing to %s: %w", topic, err)
			return p
		}
		sent += n
		if at >= from && at < until {
			p.published += n
		}
	}
	p.cpu = processCPU() - cpu0
	if busy0 > 0 {
		p.others = max(0, machineBusy()-busy0-p.cpu)
	}
	return p
}

func (r result) latencySummary() string {
	s := r.lat
	out := fmt.Sprintf("published %d in %s (%.0f msgs/s), handled %d: p50 %s, p99 %s, p99.9 %s, max %s; CPU %.1f%% of one CPU; stop took %s",
		s.published, s.window, s.rate(), r.processed, fmtLatency(s.p50), fmtLatency(s.p99), fmtLatency(s.p999), fmtLatency(s.max),
		100*r.cpuShare(), r.stopTook.Round(time.Millisecond))
	if sh := r.othersShare(); sh >= 0.05 {
		out += fmt.Sprintf("; other processes used %.0f%% of the CPUs", 100*sh)
	}
	if s.unreadable > 0 {
		out += fmt.Sprintf("; %d messages without a readable %s header", s.unreadable, headerSentAt)
	}
	if r.err != nil {
		out += "; error: " + r.err.Error()
	}
	return out
}

// cpuShare is the process's CPU time over the wall time, in CPUs.
func (r result) cpuShare() float64 {
	if r.wall <= 0 {
		return 0
	}
	return r.cpu.Seconds() / r.wall.Seconds()
}

// fmtLatency rounds a latency to 3 significant figures or so.
func fmtLatency(d time.Duration) string {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}
