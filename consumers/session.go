package consumers

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// session is one assignment: a fetch loop per partition, periodic commits,
// then drain and a final commit when the assignment ends.
type session struct {
	src Session
	// invokeCtx is the invocations' context: it outlives the assignment by
	// DrainTimeout, so a revocation lets in-flight work finish.
	invokeCtx context.Context
	draining  atomic.Bool
	drainCh   chan struct{}
	workers   *workerPool
	invoking  sync.WaitGroup // worker chains that have not returned
	// commitMu serialises the session's commits: the periodic and final
	// ones, and the crash-loop guard's marks.
	commitMu sync.Mutex
}

type partition struct {
	topic     string
	id        int
	tr        *tracker
	committed atomic.Int64
	fetched   atomic.Int64 // offset of the last fetched message
	mu        sync.Mutex
	chains    map[string]*chain
	// settle, for a queue that acknowledges each message (Settler), is
	// told every tracked message's outcome; set before the first fetch.
	settle func(offset int64, final bool)
}

type chain struct{ queue []*work }

// work is one fetched message on its way to an outcome.
type work struct {
	msg  handlers.Message
	seq  uint64
	size int64
	// offset is the message's position as fetched, before a replay or a
	// delay topic restored its original coordinates.
	offset int64
	p      *partition
	// inlineTries and inlineErr carry a failed inline attempt over to
	// process.
	inlineTries int
	inlineErr   error
	// careful is set on a message the crash-loop guard runs alone.
	careful *carefulRun
	// failureEmitted: the message is on the onFailure topic already, so
	// a dead-letter write that starts over does not repeat it.
	failureEmitted bool
}

func (r *Runner) session(s Session) {
	ctx := s.Context()
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	ss := &session{src: s, invokeCtx: workCtx, drainCh: make(chan struct{}), workers: newWorkerPool()}
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
	// commit, and only then release the partitions. The drain timeout
	// covers the fetch loops too: one may be inside an inline invocation.
	ss.draining.Store(true)
	close(ss.drainCh)
	drained := make(chan struct{})
	go func() {
		fetchers.Wait() // every worker a fetch loop started is counted before invoking.Wait
		ss.invoking.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(r.opts.DrainTimeout):
		r.log.Warn("drain timed out; abandoning in-flight invocations, they will be redelivered",
			"in_flight", r.active.Load(), "timeout", r.opts.DrainTimeout)
		cancelWork()
		select {
		case <-drained:
		case <-time.After(r.opts.DrainGrace):
			// A handler that ignores its context cannot hold the
			// partitions hostage: commit what finished and let go. Its
			// messages are unfinished, so they are redelivered.
			r.log.Error("handlers still running after cancellation; releasing the partitions anyway",
				"in_flight", r.active.Load())
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
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
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
	if err := r.timedCommit(func() error { return ss.src.Commit(ctx, offsets) }); err != nil {
		return err
	}
	for _, p := range ps {
		if pos, ok := offsets[p.topic][p.id]; ok {
			p.committed.Store(pos)
		}
	}
	return nil
}

// timedCommit runs one commit request and records it: the Commit hook
// (its latency) and the commit or commit-error count.
func (r *Runner) timedCommit(commit func() error) error {
	start := time.Now()
	err := commit()
	if r.opts.Hooks.Commit != nil {
		r.opts.Hooks.Commit(time.Since(start), err)
	}
	if err != nil {
		r.commitErr.Add(1)
	} else {
		r.commits.Add(1)
	}
	return err
}

func partitionNames(ps []*partition) []string {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.topic + "/" + strconv.Itoa(p.id)
	}
	return ids
}
