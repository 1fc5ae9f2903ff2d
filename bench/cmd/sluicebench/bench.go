package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/topics"
)

// bench is one run: the broker's addresses and the options.
type bench struct {
	opts    options
	brokers []string
	log     *slog.Logger
	out     io.Writer
}

// family is a scenario family: one pre-filled topic and the handler every
// peer runs on it.
type family struct {
	name     string
	topic    string
	messages int
	keys     int
	delay    time.Duration // the handler's latency; 0 is a no-op
	// peers are the consumers measured on the topic, in order.
	peers       []string
	concurrency int // Sluice's handler concurrency
	// limit stops a peer that has not processed every message by then; its
	// rate is what it processed over the limit.
	limit time.Duration
}

func (b *bench) family(name string) family {
	switch name {
	case "slow":
		return family{name: name, topic: "bench.slow", messages: b.opts.slowMessages, keys: b.opts.slowKeys,
			delay: b.opts.slowDelay, limit: min(b.opts.slowCap, b.opts.timeout), peers: b.opts.peers, concurrency: b.opts.concurrency}
	case "http":
		return family{name: name, topic: "bench.http", messages: b.opts.httpMessages, keys: b.opts.keys,
			limit: b.opts.timeout, peers: httpPeers, concurrency: httpConcurrency}
	case "adaptive":
		return family{name: name, topic: "bench.adaptive", messages: b.opts.adaptiveMessages, keys: 1000,
			limit: b.opts.timeout, peers: b.opts.adaptiveVariants, concurrency: adaptiveMax}
	default:
		return family{name: name, topic: "bench.noop", messages: b.opts.messages, keys: b.opts.keys, limit: b.opts.timeout,
			peers: b.opts.peers, concurrency: b.opts.concurrency}
	}
}

// scenario fills the family's topic once, then measures every peer on it,
// one after the other, each with a fresh consumer group. Each round starts
// the order one peer later, so no peer always runs first after the fill
// (while the broker may still be writing it out) or always last.
func (b *bench) scenario(ctx context.Context, name string) ([]result, error) {
	if name == "latency" {
		return b.latencyRounds(ctx)
	}
	if name == "queues" {
		return b.queueRounds(ctx)
	}
	f := b.family(name)
	if err := b.fill(ctx, f); err != nil {
		return nil, err
	}
	var out []result
	for round := 1; round <= b.opts.rounds; round++ {
		peers := f.peers
		k := (round - 1) % len(peers)
		peers = append(slices.Clone(peers[k:]), peers[:k]...)
		for _, p := range peers {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			r := b.measure(ctx, f, p, round)
			fmt.Fprintf(b.out, "  %-6s %-12s round %d: %s\n", f.name, p, round, r.summary())
			out = append(out, r)
		}
	}
	return out, nil
}

// fill creates the family's topic and produces its messages, keys spread
// round-robin over f.keys distinct keys.
func (b *bench) fill(ctx context.Context, f family) error {
	tc, err := topics.New(topics.Config{Brokers: b.brokers, Partitions: b.opts.partitions})
	if err != nil {
		return err
	}
	if err := tc.Create(ctx, f.topic, b.opts.partitions, nil); err != nil {
		return err
	}
	value := make([]byte, b.opts.size)
	_, _ = rand.Read(value)
	keys := make([][]byte, f.keys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%06d", i)
	}
	start := time.Now()
	const batch = 20_000
	for from := 0; from < f.messages; from += batch {
		to := min(f.messages, from+batch)
		recs := make([]topics.Record, 0, to-from)
		for i := from; i < to; i++ {
			recs = append(recs, topics.Record{Key: keys[i%len(keys)], Value: value, Partition: -1})
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := tc.Produce(pctx, f.topic, recs)
		cancel()
		if err != nil {
			return fmt.Errorf("filling %s: %w", f.topic, err)
		}
	}
	d := time.Since(start)
	fmt.Fprintf(b.out, "%s: filled %s with %d x %d-byte messages, %d keys, %d partitions in %s (%.0f msgs/s)\n",
		f.name, f.topic, f.messages, b.opts.size, f.keys, b.opts.partitions, d.Round(time.Millisecond), float64(f.messages)/d.Seconds())
	return nil
}

// consumeSpec is what a peer is given: where to read, and the callbacks
// that measure it.
type consumeSpec struct {
	brokers     []string
	topic       string
	name        string // unique per run; the peer derives its group from it
	concurrency int
	log         *slog.Logger
	// started is called once, when the peer starts consuming: the clock
	// starts then.
	started func()
	// handle is the user's handler: it must be called once per message,
	// and the message counts as processed when it returns.
	handle func()
	// handleN counts n messages as processed at once, without handle's
	// delay: for a peer whose handler is outside the program's code (an
	// HTTP endpoint that receives n messages in one request).
	handleN func(n int)
}

// consumer runs one peer until ctx is done and returns only once the peer
// has stopped and released what it holds (group membership, connections).
type consumer func(ctx context.Context, c consumeSpec) error

// result is one peer's run.
type result struct {
	family    family
	peer      string
	round     int
	processed int64
	wall      time.Duration // from start to the last counted message (or the limit)
	toFirst   time.Duration // from start to the first finished message
	steady    time.Duration // from the first to the last counted message
	stopTook  time.Duration
	cpu       time.Duration // process CPU time over the wall window
	others    time.Duration // CPU time other processes used over the window
	capped    bool          // stopped at the family's limit before processing all
	err       error
	spread    string        // the report's min-max wall rate over the rounds
	lat       *latencyStats // the latency scenario's figures; nil in the others
}

func (r result) wallRate() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.processed) / r.wall.Seconds()
}

func (r result) steadyRate() float64 {
	if r.steady <= 0 || r.processed < 2 {
		return 0
	}
	return float64(r.processed-1) / r.steady.Seconds()
}

// cpuPerMsg is the process CPU time per processed message.
func (r result) cpuPerMsg() time.Duration {
	if r.processed == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.processed)
}

// othersShare is the share of the machine's CPUs that other processes
// used during the run: a run with a large share was disturbed.
func (r result) othersShare() float64 {
	if r.wall <= 0 {
		return 0
	}
	return r.others.Seconds() / (r.wall.Seconds() * float64(runtime.NumCPU()))
}

func (r result) summary() string {
	if r.lat != nil {
		return r.latencySummary()
	}
	s := fmt.Sprintf("%d msgs in %s = %.0f msgs/s (steady %.0f msgs/s after %s to the first), CPU %s/msg; stop took %s",
		r.processed, r.wall.Round(time.Millisecond), r.wallRate(), r.steadyRate(), r.toFirst.Round(time.Millisecond),
		r.cpuPerMsg(), r.stopTook.Round(time.Millisecond))
	if sh := r.othersShare(); sh >= 0.05 {
		s += fmt.Sprintf("; other processes used %.0f%% of the CPUs", 100*sh)
	}
	if r.capped {
		s += fmt.Sprintf("; stopped at the %s limit", r.family.limit)
	}
	if r.err != nil {
		s += "; error: " + r.err.Error()
	}
	return s
}

// startTimeout bounds how long a peer may take to call started.
const startTimeout = time.Minute

// stopTimeout bounds how long a peer may take to stop; past it the run
// goes on and the peer is reported, as its goroutines may skew what follows.
const stopTimeout = 2 * time.Minute

func (b *bench) measure(ctx context.Context, f family, peer string, round int) result {
	res := result{family: f, peer: peer, round: round}
	var (
		count   atomic.Int64
		first   atomic.Int64 // unix nanos of the first finished message
		reached = make(chan struct{})
		target  = int64(f.messages)
		delay   = f.delay
	)
	// add counts k processed messages. A redelivered message counts again,
	// so the count may pass the target; reached is closed once, on the
	// add that gets there.
	add := func(k int64) {
		n := count.Add(k)
		if n == k {
			first.Store(time.Now().UnixNano())
		}
		if n >= target && n-k < target {
			close(reached)
		}
	}
	started := make(chan time.Time, 1)
	spec := consumeSpec{
		brokers:     b.brokers,
		topic:       f.topic,
		name:        fmt.Sprintf("bench-%s-%s-%d", f.name, peer, round),
		concurrency: f.concurrency,
		log:         b.log,
		started: func() {
			select {
			case started <- time.Now():
			default:
			}
		},
		handle: func() {
			if delay > 0 {
				time.Sleep(delay)
			}
			add(1)
		},
		handleN: func(n int) { add(int64(n)) },
	}

	runtime.GC()
	b.waitQuiet(ctx)
	stopProfile := b.startProfile(f, peer, round)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- consumers[peer](runCtx, spec) }()

	var (
		t0          time.Time
		cpu0, busy0 time.Duration
	)
	select {
	case t0 = <-started:
		cpu0, busy0 = processCPU(), machineBusy()
	case err := <-done:
		stopProfile()
		res.err = fmt.Errorf("did not start: %w", err)
		return res
	case <-time.After(startTimeout):
		res.err = fmt.Errorf("did not start within %s", startTimeout)
		cancel()
	case <-ctx.Done():
		res.err = ctx.Err()
		cancel()
	}
	var end time.Time
	stoppedEarly := false
	if res.err == nil {
		limit := time.NewTimer(f.limit)
		select {
		case <-reached:
			end = time.Now()
			res.processed = target
		case <-limit.C:
			end = time.Now()
			res.processed = count.Load()
			res.capped = true
		case err := <-done:
			end = time.Now()
			res.processed = count.Load()
			res.err = fmt.Errorf("stopped on its own: %v", err)
			stoppedEarly = true
		case <-ctx.Done():
			end = time.Now()
			res.processed = count.Load()
			res.err = ctx.Err()
		}
		limit.Stop()
		res.cpu = processCPU() - cpu0
		if busy0 > 0 {
			res.others = max(0, machineBusy()-busy0-res.cpu)
		}
		res.wall = end.Sub(t0)
		if ns := first.Load(); ns != 0 {
			firstAt := time.Unix(0, ns)
			res.toFirst = firstAt.Sub(t0)
			res.steady = end.Sub(firstAt)
		}
	}
	stopProfile()

	cancel()
	stopAt := time.Now()
	if !stoppedEarly {
		select {
		case err := <-done:
			if err != nil && res.err == nil {
				res.err = fmt.Errorf("stopping: %w", err)
			}
		case <-time.After(stopTimeout):
			res.err = errors.Join(res.err, fmt.Errorf("did not stop within %s", stopTimeout))
		}
	}
	res.stopTook = time.Since(stopAt)
	return res
}

// waitQuiet waits, up to -quiet-wait, until other processes leave the
// CPUs alone for a second (under 10% of them busy), so that a build or a
// test run elsewhere on the machine does not land inside a measurement.
func (b *bench) waitQuiet(ctx context.Context) {
	if b.opts.quietWait <= 0 || machineBusy() == 0 {
		return
	}
	const window = time.Second
	deadline := time.Now().Add(b.opts.quietWait)
	for {
		busy0, cpu0 := machineBusy(), processCPU()
		select {
		case <-time.After(window):
		case <-ctx.Done():
			return
		}
		others := machineBusy() - busy0 - (processCPU() - cpu0)
		share := others.Seconds() / (window.Seconds() * float64(runtime.NumCPU()))
		if share < 0.10 {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(b.out, "  (other processes still use %.0f%% of the CPUs after waiting %s; measuring anyway)\n", 100*share, b.opts.quietWait)
			return
		}
	}
}

// startProfile writes a CPU profile of one run when -cpuprofile is set.
func (b *bench) startProfile(f family, peer string, round int) (stop func()) {
	if b.opts.cpuProfile == "" {
		return func() {}
	}
	path := fmt.Sprintf("%s.%s.%s.%d.pprof", b.opts.cpuProfile, f.name, peer, round)
	file, err := os.Create(path)
	if err != nil {
		b.log.Error("cpu profile", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(file); err != nil {
		file.Close()
		b.log.Error("cpu profile", "err", err)
		return func() {}
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			pprof.StopCPUProfile()
			file.Close()
		}
	}
}
