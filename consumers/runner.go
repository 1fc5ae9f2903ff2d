package consumers

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicehq/sluice/handlers"
)

// Options tune the engine. Zero values take the documented defaults.
type Options struct {
	// CommitInterval is how often finished positions are committed. Default 1s.
	CommitInterval time.Duration
	// DrainTimeout bounds how long a revoked or stopping assignment waits
	// for in-flight invocations before abandoning them (they are then
	// redelivered, never lost). Default 20s.
	DrainTimeout time.Duration
	// MaxPendingPerPartition bounds the fetched messages of one partition
	// not yet behind its commit position, and so the redelivery a crash can
	// cause. Default 64 x concurrency, at least 1,024.
	MaxPendingPerPartition int
	// DeadLetter receives messages that cannot be handled. Without one,
	// such messages are retried until they succeed, so nothing is lost.
	DeadLetter DeadLetterer
	// Outputs produces the outputs of handlers with onSuccess, and the
	// failures of handlers with onFailure. Without one, a handler's
	// outputs fail it permanently (dead-lettered with that reason).
	Outputs OutputWriter
	// Parker moves messages to delay topics in retry mode topics; without
	// one, that mode dead-letters after the in-place attempts.
	Parker Parker
	// StallAfter is how long a handler may go without an assignment before
	// its status says "stalled" rather than "rejoining". Default 90s.
	StallAfter time.Duration
	// DrainGrace is how long invocations get to return after the drain
	// timeout cancelled them, before the partitions are released anyway.
	// Default 5s.
	DrainGrace time.Duration
	// FinalCommitTimeout bounds the commit that ends an assignment. Default
	// 10s.
	FinalCommitTimeout time.Duration
	// AdaptWindow is how often an adaptive limit is reconsidered. Default
	// 250ms.
	AdaptWindow time.Duration
	// Counters, if set, are the handler's counters to add to; a caller that
	// restarts runners (a spec change, pause and resume) passes the same
	// ones so the counts keep growing. Default: new ones.
	Counters *Counters
	// Hooks observe the engine for metrics and traces; nil fields are
	// skipped.
	Hooks Hooks
	// Logger receives the engine's logs. Default slog.Default().
	Logger *slog.Logger
}

// Hooks observe invocations. They run on the invoking goroutine and must be
// cheap and safe for concurrent use.
type Hooks struct {
	// Invoke wraps one invocation: it may add trace context to ctx, and
	// returns a function to call with the outcome (nil when there is
	// nothing to end).
	Invoke func(ctx context.Context, m *handlers.Message) (context.Context, func(err error))
	// Done observes every finished invocation.
	Done func(m *handlers.Message, err error, d time.Duration)
	// Commit is told of every offset commit and its outcome.
	Commit func(d time.Duration, err error)
}

// The engine's defaults, also the node's (sluice.DefaultConfig).
const (
	DefaultCommitInterval     = time.Second
	DefaultDrainTimeout       = 20 * time.Second
	DefaultDrainGrace         = 5 * time.Second
	DefaultFinalCommitTimeout = 10 * time.Second
	DefaultSessionTimeout     = 10 * time.Second
)

func (o Options) withDefaults(concurrency int) Options {
	if o.AdaptWindow <= 0 {
		o.AdaptWindow = 250 * time.Millisecond
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = DefaultCommitInterval
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.StallAfter <= 0 {
		o.StallAfter = 90 * time.Second
	}
	if o.DrainGrace <= 0 {
		o.DrainGrace = DefaultDrainGrace
	}
	if o.FinalCommitTimeout <= 0 {
		o.FinalCommitTimeout = DefaultFinalCommitTimeout
	}
	if o.MaxPendingPerPartition <= 0 {
		o.MaxPendingPerPartition = max(1024, 64*concurrency)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Runner consumes one handler's topics and invokes its handler, with the
// at-least-once guarantee: a partition's offset is committed only past
// messages that have all reached a final outcome (handled, or durably
// dead-lettered).
//
// Within one Runner, ordering decides what may run at once: with "key",
// messages of the same key run one at a time in offset order and different
// keys run in parallel (messages without a key are unordered); with
// "partition", each partition runs one at a time; with "none", anything
// runs. In every mode no more than the concurrency limit of messages (and
// spec.MaxInFlightBytes of them) are in flight at once, across all
// partitions; with an adaptive limit, the limit itself moves (adaptive.go).
type Runner struct {
	spec    handlers.Spec
	invoker handlers.Invoker
	src     Source
	opts    Options
	log     *slog.Logger
	timeout time.Duration
	br      *breaker
	limiter *rate.Limiter
	// gate bounds the fetched messages held (holdFactor × the limit, and
	// MaxInFlightBytes); run bounds those being invoked (the limit).
	gate  *gate
	run   *gate
	adapt *adaptive
	batch *batcher
	// recentNs is a moving average of invocation latency (ns).
	recentNs atomic.Int64

	mu         sync.Mutex
	partitions []*partition
	state      string
	stateSince time.Time
	lastErr    string

	*Counters
	// active counts the worker chains running for the handler; the
	// breaker's half-open probe waits for them.
	active atomic.Int64
}

// NewRunner returns a runner for a normalized, valid spec.
func NewRunner(spec handlers.Spec, inv handlers.Invoker, src Source, opts Options) *Runner {
	opts = opts.withDefaults(spec.Concurrency.Max)
	start := spec.Concurrency.Max
	var adapt *adaptive
	if spec.Concurrency.IsAdaptive() {
		start = spec.Concurrency.Min
		adapt = newAdaptive(spec.Concurrency.Min, spec.Concurrency.Max, opts.AdaptWindow)
	}
	r := &Runner{
		spec:    spec,
		invoker: inv,
		src:     src,
		opts:    opts,
		log:     opts.Logger.With("handler", spec.Name),
		timeout: spec.InvocationTimeout(),
		br:      newBreaker(spec.Name, spec.Breaker),
		gate:    newGate(holdFor(spec.Ordering)*start, spec.MaxInFlightBytes),
		run:     newGate(start, math.MaxInt64),
		adapt:   adapt,
		state:   StateStarting,
	}
	r.stateSince = time.Now()
	r.Counters = opts.Counters
	if r.Counters == nil {
		r.Counters = &Counters{}
	}
	if bi, ok := inv.(handlers.BatchInvoker); ok && spec.Batch != nil && spec.Batch.Size > 1 {
		r.batch = newBatcher(r, bi, spec.Batch)
	}
	if spec.RateLimit > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(spec.RateLimit), max(1, int(spec.RateLimit/10)))
	}
	return r
}

// Run consumes until ctx is done, then drains: it stops fetching, lets
// in-flight invocations finish (up to DrainTimeout), commits, and leaves the
// group. It returns only after that.
func (r *Runner) Run(ctx context.Context) error {
	for {
		err := r.src.Consume(ctx, r.session, r.SourceError)
		if ctx.Err() != nil {
			r.setState(StateStopped, "")
			return nil
		}
		if err != nil {
			r.log.Error("consuming failed; restarting", "err", err)
			r.setState(StateError, err.Error())
		}
		if !sleepCtx(ctx, time.Second) {
			r.setState(StateStopped, "")
			return nil
		}
	}
}

// Runner states, as Status reports them.
const (
	// StateStarting: the handler has not had its first assignment yet.
	StateStarting = "starting"
	// StateRunning: the handler owns its assignment and consumes.
	StateRunning = "running"
	// StateRejoining: the last assignment ended (a rebalance, a member
	// joined or left) and the group is re-forming.
	StateRejoining = "rejoining"
	// StateStalled: starting or rejoining for longer than StallAfter; an
	// operator should look (docs/operations.md).
	StateStalled = "stalled"
	// StateBreakerOpen: running, with the breaker open.
	StateBreakerOpen = "breaker-open"
	// StateError: the source failed and is being restarted, or the server
	// of a queue stopped answering during an assignment.
	StateError = "error"
	// StateStopped: the runner has stopped.
	StateStopped = "stopped"
)

// SourceError is the callback a Source uses to report a transient error
// (or recovery, with nil). It is shown as the status's last error. While
// the source joins its group the state stays starting or rejoining, and
// turns stalled after StallAfter. During an assignment (a queue whose
// server stopped answering) the state turns error, and back to running on
// recovery: the assignment and the messages it holds are kept.
func (r *Runner) SourceError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.lastErr = ""
		if r.state == StateError && r.partitions != nil {
			r.state, r.stateSince = StateRunning, time.Now()
		}
		return
	}
	r.lastErr = err.Error()
	switch {
	case r.state == StateRunning && r.partitions != nil:
		r.state, r.stateSince = StateError, time.Now()
	case r.state == StateError && r.partitions == nil, r.state == StateStopped:
		r.state, r.stateSince = StateRejoining, time.Now()
	}
}

func (r *Runner) setState(state, lastErr string) {
	r.mu.Lock()
	if r.state != state {
		r.state, r.stateSince = state, time.Now()
	}
	if lastErr != "" || state == StateRunning {
		r.lastErr = lastErr
	}
	r.mu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Status is a snapshot of a runner.
type Status struct {
	// State is one of the State constants.
	State string `json:"state"`
	// StateSince is when the state began; with starting, rejoining and
	// stalled it says how long the group has been re-forming.
	StateSince    time.Time `json:"stateSince"`
	LastError     string    `json:"lastError,omitempty"`
	InFlight      int       `json:"inFlight"`
	InFlightBytes int64     `json:"inFlightBytes"`
	// Held counts fetched messages not yet finished: those in flight and
	// those queued behind a running message of their key or partition.
	Held         int               `json:"held"`
	Limit        int               `json:"concurrencyLimit"`
	Received     uint64            `json:"received"`
	Succeeded    uint64            `json:"succeeded"`
	Failed       uint64            `json:"failed"`
	Retried      uint64            `json:"retried"`
	DeadLettered uint64            `json:"deadLettered"`
	Parked       uint64            `json:"parked,omitempty"`
	Replayed     uint64            `json:"replayed"`
	Commits      uint64            `json:"commits"`
	CommitErrs   uint64            `json:"commitErrors"`
	Rebalances   uint64            `json:"rebalances"`
	Breaker      *BreakerStatus    `json:"breaker,omitempty"`
	Partitions   []PartitionStatus `json:"partitions"`

	// Filtered counts messages that did not match the spec's filter:
	// committed without an invocation.
	Filtered uint64 `json:"filtered"`
	// Emitted counts outputs produced to the onSuccess topic.
	Emitted uint64 `json:"emitted"`
}

// PartitionStatus is one assigned partition.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Committed int64  `json:"committed"`
	Fetched   int64  `json:"fetched"`
	Pending   int    `json:"pending"`
}

// Status returns a snapshot; safe for concurrent use.
func (r *Runner) Status() Status {
	r.mu.Lock()
	st := Status{State: r.state, StateSince: r.stateSince, LastError: r.lastErr}
	ps := r.partitions
	r.mu.Unlock()
	if (st.State == StateStarting || st.State == StateRejoining) && time.Since(st.StateSince) > r.opts.StallAfter {
		st.State = StateStalled
	}
	st.InFlight, _, st.Limit = r.run.state()
	st.Held, st.InFlightBytes, _ = r.gate.state()
	r.Counters.Fill(&st)
	st.Breaker = r.br.status()
	if st.State == StateRunning && st.Breaker.State == "open" {
		st.State = StateBreakerOpen
	}
	st.Partitions = make([]PartitionStatus, 0, len(ps))
	for _, p := range ps {
		st.Partitions = append(st.Partitions, PartitionStatus{
			Topic: p.topic, Partition: p.id, Committed: p.committed.Load(), Fetched: p.fetched.Load(), Pending: p.tr.pending(),
		})
	}
	return st
}

// adaptLimit moves an adaptive limit when its window is due.
func (r *Runner) adaptLimit() {
	if r.adapt == nil {
		return
	}
	// The peak in flight is read once per window, when it closes.
	now := time.Now()
	if !r.adapt.due(now) {
		return
	}
	if l, changed := r.adapt.update(now, r.run.takePeak()); changed {
		r.run.setLimit(l)
		r.gate.setLimit(holdFor(r.spec.Ordering) * l)
	}
}

// holdFactor is how many fetched messages a handler may hold per unit of
// its concurrency limit: the limit in flight, and three times as many
// queued behind running messages of their key, so that busy keys do not
// starve the others of fetched work. Measured with 1,000 keys and a 5 ms
// handler at a limit of 512: 2 reaches 58% of the Little's-law bound, 4
// reaches 70%. maxInFlightBytes bounds the memory either way.
const holdFactor = 4

// holdFor is the hold factor of an ordering. With ordering none nothing
// queues behind a running message, so a message held beyond the limit only
// waits for a run slot: it holds 1 x the limit (the http benchmark, one
// message per request: 12,778 msgs/s holding 4x, 16,000 and more holding
// 1x).
func holdFor(o handlers.Ordering) int {
	if o == handlers.OrderingNone {
		return 1
	}
	return holdFactor
}

// Counters count what a handler's runners did; safe for concurrent use.
type Counters struct {
	received     atomic.Uint64
	succeeded    atomic.Uint64
	failed       atomic.Uint64
	retried      atomic.Uint64
	parked       atomic.Uint64
	filtered     atomic.Uint64
	emitted      atomic.Uint64
	replayed     atomic.Uint64
	deadLettered atomic.Uint64
	commits      atomic.Uint64
	commitErr    atomic.Uint64
	rebalances   atomic.Uint64
}

// Fill copies the counts into st.
func (c *Counters) Fill(st *Status) {
	st.Received = c.received.Load()
	st.Succeeded = c.succeeded.Load()
	st.Failed = c.failed.Load()
	st.Retried = c.retried.Load()
	st.Parked = c.parked.Load()
	st.Filtered = c.filtered.Load()
	st.Emitted = c.emitted.Load()
	st.Replayed = c.replayed.Load()
	st.DeadLettered = c.deadLettered.Load()
	st.Commits = c.commits.Load()
	st.CommitErrs = c.commitErr.Load()
	st.Rebalances = c.rebalances.Load()
}
