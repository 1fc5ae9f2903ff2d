package consumers

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
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
	// Parker moves messages to delay topics in retry mode topics; without
	// one, that mode dead-letters after the in-place attempts.
	Parker Parker
	// StallAfter is how long a handler may go without an assignment before
	// its status says "stalled" rather than "rejoining". Default 90s.
	StallAfter time.Duration
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
	running atomic.Int64
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
		gate:    newGate(holdFactor*start, spec.MaxInFlightBytes),
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
		err := r.src.Consume(ctx, r.session)
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
	// StateError: the source failed and is being restarted.
	StateError = "error"
	// StateStopped: the runner has stopped.
	StateStopped = "stopped"
)

// SourceError is the callback a Source uses to report a transient error
// while it joins its group (or recovery, with nil). It is shown as the
// status's last error; the state stays starting or rejoining, and turns
// stalled after StallAfter.
func (r *Runner) SourceError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.lastErr = ""
		return
	}
	r.lastErr = err.Error()
	if r.state == StateError || r.state == StateStopped {
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

// session is one assignment: a fetch loop per partition, periodic commits,
// then drain and a final commit when the assignment ends.
type session struct {
	src      Session
	work     context.Context // invocations; outlives the assignment by DrainTimeout
	draining atomic.Bool
	drainCh  chan struct{}
	workers  *workerPool
	running  sync.WaitGroup // goroutines invoking handlers
}

type partition struct {
	topic     string
	id        int
	tr        *tracker
	committed atomic.Int64
	fetched   atomic.Int64 // offset of the last fetched message
	mu        sync.Mutex
	chains    map[string]*chain
}

type chain struct{ queue []*work }

type work struct {
	msg  handlers.Message
	seq  uint64
	size int64
	p    *partition
	// tries and pending carry a failed inline attempt over to process.
	tries   int
	pending error
}

func (r *Runner) session(s Session) {
	ctx := s.Context()
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	ss := &session{src: s, work: workCtx, drainCh: make(chan struct{}), workers: newWorkerPool()}
	if r.batch != nil {
		r.batch.start(workCtx)
	}
	r.rebalances.Add(1)

	assigns := s.Assignments()
	ps := make([]*partition, len(assigns))
	var fetchers sync.WaitGroup
	for i, a := range assigns {
		p := &partition{topic: a.Topic, id: a.Partition, tr: newTracker(), chains: make(map[string]*chain)}
		p.committed.Store(a.Offset)
		p.fetched.Store(-1)
		ps[i] = p
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			r.fetchLoop(ctx, ss, p, a)
		}()
	}
	r.mu.Lock()
	r.partitions = ps
	r.state, r.stateSince = StateRunning, time.Now()
	r.lastErr = ""
	r.mu.Unlock()
	r.log.Info("assignment started", "partitions", partitionNames(ps))

	ticker := time.NewTicker(r.opts.CommitInterval)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-ticker.C:
			r.adaptLimit()
			if err := r.commit(ctx, ss, ps); err != nil && ctx.Err() == nil && !errors.Is(err, ErrFenced) {
				r.log.Warn("commit failed; will retry", "err", err)
			}
		}
	}

	// The assignment is over: stop fetching, let in-flight work finish,
	// commit, and only then release the partitions.
	fetchers.Wait()
	ss.draining.Store(true)
	close(ss.drainCh)
	drained := make(chan struct{})
	go func() { ss.running.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(r.opts.DrainTimeout):
		r.log.Warn("drain timed out; abandoning in-flight invocations, they will be redelivered",
			"in_flight", r.running.Load(), "timeout", r.opts.DrainTimeout)
		cancelWork()
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
			// A handler that ignores its context cannot hold the
			// partitions hostage: commit what finished and let go. Its
			// messages are unfinished, so they are redelivered.
			r.log.Error("handlers still running after cancellation; releasing the partitions anyway",
				"in_flight", r.running.Load())
		}
	}
	ss.workers.close()
	if r.batch != nil {
		select {
		case <-drained: // no invocation can still be waiting on a batch
			r.batch.close()
		default:
		}
	}
	r.finalCommit(ss, ps)
	r.mu.Lock()
	r.partitions = nil
	if r.state == StateRunning {
		r.state, r.stateSince = StateRejoining, time.Now()
	}
	r.mu.Unlock()
	r.log.Info("assignment ended", "partitions", partitionNames(ps))
}

// finalCommit commits what finished before the partitions are released.
// It retries transient errors until FinalCommitTimeout, and gives up at
// once when the group has rejected the generation: asking again cannot
// succeed, and the partitions may already be someone else's.
func (r *Runner) finalCommit(ss *session, ps []*partition) {
	deadline := time.Now().Add(r.opts.FinalCommitTimeout)
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := r.commit(ctx, ss, ps)
		cancel()
		if err == nil {
			return
		}
		if errors.Is(err, ErrFenced) {
			r.log.Warn("final commit rejected: the group moved on without this member; the uncommitted messages will be redelivered", "err", err)
			return
		}
		if time.Now().Add(backoff).After(deadline) {
			r.log.Error("final commit failed; the uncommitted messages will be redelivered to the next owner", "err", err)
			return
		}
		r.log.Warn("final commit failed; retrying", "err", err)
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (r *Runner) commit(ctx context.Context, ss *session, ps []*partition) error {
	var offsets map[string]map[int]int64
	for _, p := range ps {
		if pos := p.tr.commitPosition(); pos > p.committed.Load() {
			if offsets == nil {
				offsets = make(map[string]map[int]int64, 2)
			}
			if offsets[p.topic] == nil {
				offsets[p.topic] = make(map[int]int64, len(ps))
			}
			offsets[p.topic][p.id] = pos
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	start := time.Now()
	err := ss.src.Commit(ctx, offsets)
	if r.opts.Hooks.Commit != nil {
		r.opts.Hooks.Commit(time.Since(start), err)
	}
	if err != nil {
		r.commitErr.Add(1)
		return err
	}
	r.commits.Add(1)
	for _, p := range ps {
		if pos, ok := offsets[p.topic][p.id]; ok {
			p.committed.Store(pos)
		}
	}
	return nil
}

func (r *Runner) fetchLoop(ctx context.Context, ss *session, p *partition, a Assignment) {
	log := r.log.With("topic", p.topic, "partition", p.id)
	var rd PartitionReader
	for backoff := 100 * time.Millisecond; rd == nil; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if rd, err = ss.src.Reader(a); err != nil {
			log.Warn("opening partition reader failed; retrying", "err", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
		}
	}
	defer rd.Close()
	// Inline invocations outlive the assignment like a worker's do.
	wctx, cancel := context.WithCancel(ss.work)
	defer cancel()
	backoff := 100 * time.Millisecond
	for {
		for p.tr.pending() >= r.opts.MaxPendingPerPartition {
			select {
			case <-p.tr.wake:
			case <-ctx.Done():
				return
			}
		}
		if !r.waitBreakerForFetch(ctx) {
			return
		}
		w := &work{p: p}
		if err := rd.Fetch(ctx, &w.msg); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("fetch failed; retrying", "err", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		// A slot is taken only once a message is in hand, so partitions
		// with nothing to read never starve the others. A message that
		// waits here was fetched but is not in flight: it is not tracked
		// and so not committed past; a revocation simply drops it.
		// A parked message waits on its delay topic until due; those
		// behind it in the partition are due later still.
		if due, ok := dueAt(&w.msg); ok && !sleepUntil(ctx, due) {
			return
		}
		w.size = int64(len(w.msg.Key) + len(w.msg.Value))
		for _, h := range w.msg.Headers {
			w.size += int64(len(h.Key) + len(h.Value))
		}
		if !r.gate.acquire(ctx, w.size) {
			return
		}
		r.received.Add(1)
		p.fetched.Store(w.msg.Offset)
		w.seq = p.tr.add(w.msg.Offset)
		if _, ok := w.msg.Header(handlers.HeaderReplayOf); ok {
			r.replayed.Add(1)
		}
		restoreSource(&w.msg)
		r.dispatch(wctx, ss, w)
	}
}

// dispatch runs w inline when it can (tryInline), else starts it on a
// worker or queues it behind the message it must follow.
func (r *Runner) dispatch(ctx context.Context, ss *session, w *work) {
	var key string
	switch r.spec.Ordering {
	case handlers.OrderingNone:
		if !r.tryInline(ctx, ss, w, false) {
			r.start(ss, w, "", nil)
		}
		return
	case handlers.OrderingKey:
		if len(w.msg.Key) == 0 {
			if !r.tryInline(ctx, ss, w, false) {
				r.start(ss, w, "", nil)
			}
			return
		}
		if r.tryInline(ctx, ss, w, true) {
			return
		}
		key = string(w.msg.Key)
	default:
		if r.tryInline(ctx, ss, w, true) {
			return
		}
	}
	p := w.p
	p.mu.Lock()
	if c, ok := p.chains[key]; ok {
		c.queue = append(c.queue, w)
		p.mu.Unlock()
		return
	}
	c := &chain{}
	p.chains[key] = c
	p.mu.Unlock()
	r.start(ss, w, key, c)
}

// start runs w, then the rest of its chain if any, on an idle worker of
// the session or a new one.
func (r *Runner) start(ss *session, w *work, key string, c *chain) {
	ss.running.Add(1)
	r.running.Add(1)
	j := job{w: w, key: key, c: c}
	if ws := ss.workers.get(); ws != nil {
		ws.ch <- j
		return
	}
	go r.worker(ss, &workerSlot{ch: make(chan job, 1)}, j)
}

// job is a message to run and, for ordered handlers, the chain it heads.
type job struct {
	w   *work
	key string
	c   *chain
}

func (r *Runner) worker(ss *session, ws *workerSlot, j job) {
	// A context per worker keeps the per-invocation timeouts from all
	// registering with (and contending on) the session's context.
	ctx, cancel := context.WithCancel(ss.work)
	defer cancel()
	for {
		r.runChain(ctx, ss, j)
		if !ss.workers.put(ws) {
			return
		}
		if j = <-ws.ch; j.w == nil {
			return
		}
	}
}

// runChain processes j's message and then, while its chain has more, the
// next ones in order.
func (r *Runner) runChain(ctx context.Context, ss *session, j job) {
	defer ss.running.Done()
	defer r.running.Add(-1)
	w, c := j.w, j.c
	for {
		r.process(ctx, ss, w)
		if c == nil {
			return
		}
		p := w.p
		p.mu.Lock()
		if len(c.queue) == 0 || ss.draining.Load() {
			abandoned := c.queue
			delete(p.chains, j.key)
			p.mu.Unlock()
			for _, a := range abandoned {
				r.gate.release(a.size)
			}
			return
		}
		w = c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		p.mu.Unlock()
	}
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

func partitionNames(ps []*partition) []string {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.topic + "/" + strconv.Itoa(p.id)
	}
	return ids
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
	if l, changed := r.adapt.update(time.Now(), r.run.takePeak()); changed {
		r.run.setLimit(l)
		r.gate.setLimit(holdFactor * l)
	}
}

// holdFactor is how many fetched messages a handler may hold per unit of
// its concurrency limit: the limit in flight, and three times as many
// queued behind running messages of their key, so that busy keys do not
// starve the others of fetched work. Measured with 1,000 keys and a 5 ms
// handler at a limit of 512: 2 reaches 58% of the Little's-law bound, 4
// reaches 70%. maxInFlightBytes bounds the memory either way.
const holdFactor = 4

// Counters count what a handler's runners did; safe for concurrent use.
type Counters struct {
	received     atomic.Uint64
	succeeded    atomic.Uint64
	failed       atomic.Uint64
	retried      atomic.Uint64
	parked       atomic.Uint64
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
	st.Replayed = c.replayed.Load()
	st.DeadLettered = c.deadLettered.Load()
	st.Commits = c.commits.Load()
	st.CommitErrs = c.commitErr.Load()
	st.Rebalances = c.rebalances.Load()
}
