package dlq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Job states.
const (
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
)

// Job kinds.
const (
	JobReplay  = "replay"
	JobDiscard = "purge"
)

// ErrJobRunning is returned by Jobs.Start while the handler has a job
// running.
var ErrJobRunning = errors.New("a dead-letter job of this handler is running")

// ErrNoJob is returned for a job id that is not known.
var ErrNoJob = errors.New("dead-letter job not found")

// Job is a replay or purge that runs in a node, not in the request that
// started it: it goes on if the client goes away, and its progress can be
// read while it runs.
type Job struct {
	ID      string `json:"id"`
	Handler string `json:"handler"`
	// Kind is replay or purge.
	Kind string `json:"kind"`
	// Topic is the dead-letter topic the entries are read from.
	Topic string `json:"topic"`
	// State is running, succeeded or failed.
	State string `json:"state"`
	// Done counts the entries replayed or discarded so far (and marked so:
	// a batch counts once it is marked); Total is how many were selected,
	// 0 until the selection is read.
	Done  int    `json:"done"`
	Total int    `json:"total"`
	Error string `json:"error,omitempty"`
	// Node is the node that runs it.
	Node       string    `json:"node,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// UpdatedAt is the job's last heartbeat or progress, while it runs.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// JobStore keeps jobs where every node reads them. Queue is one: the jobs
// are rows of the state topic.
type JobStore interface {
	PutJob(ctx context.Context, j Job) error
	GetJob(handler, id string) (Job, bool)
	ListJobs(handler string) []Job
	DeleteJob(ctx context.Context, handler, id string) error
}

// Timings of the stored jobs.
var (
	// JobHeartbeat is how often a running job's row is refreshed.
	JobHeartbeat = 10 * time.Second
	// JobStaleAfter is how long a running job's row may go without a
	// heartbeat before it is shown as failed: its node stopped (a crash) or
	// lost the broker.
	JobStaleAfter = 60 * time.Second
)

// keptJobs bounds how many finished jobs are kept per handler (in the store)
// and per node (in memory).
const keptJobs = 20

// Jobs runs dead-letter jobs, at most one at a time per handler, and
// reports their progress. With a store, a job's row is written when it
// starts, after each batch, every JobHeartbeat, and when it ends, so any
// node can show it and refuse a second job of the handler; a row that
// stops being refreshed while running (its node crashed) shows as failed
// after JobStaleAfter. A job cut short is not resumed: the entries it did
// not mark stay dead, and starting it again finishes it. Safe for
// concurrent use.
type Jobs struct {
	ctx   context.Context
	node  string
	store JobStore

	mu      sync.Mutex
	jobs    map[string]*Job // this node's, running or kept
	order   []string        // ids of jobs, oldest first
	running map[string]string
	wg      sync.WaitGroup
}

// NewJobs returns a job runner whose jobs run under ctx (the node's life:
// cancelling it stops them), are labelled with node, and are kept in store
// (nil: in this node's memory only).
func NewJobs(ctx context.Context, node string, store JobStore) *Jobs {
	return &Jobs{ctx: ctx, node: node, store: store, jobs: map[string]*Job{}, running: map[string]string{}}
}

// live presents a stored job as it is: a running job whose row is no
// longer refreshed is failed.
func live(j Job, now time.Time) Job {
	if j.State == JobRunning && now.Sub(j.UpdatedAt) > JobStaleAfter {
		j.State = JobFailed
		j.Error = fmt.Sprintf("abandoned: node %s last reported on it at %s (it stopped, crashed or lost the broker); %d of %d entries were done, the others are still dead: start the job again",
			j.Node, j.UpdatedAt.Format(time.RFC3339), j.Done, j.Total)
	}
	return j
}

// Start runs fn as a job of handler in the background and returns it as
// started. fn reports its progress; its count and error are the job's
// outcome. While handler has a running job (on this node, or on any node
// per the store), Start returns ErrJobRunning. Two nodes starting a job of
// one handler at the same moment can both succeed: the store has no
// compare-and-set.
func (j *Jobs) Start(ctx context.Context, handler, kind, topic string, fn func(ctx context.Context, progress Progress) (int, error)) (Job, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	now := time.Now().UTC()
	job := &Job{ID: hex.EncodeToString(b[:]), Handler: handler, Kind: kind, Topic: topic, State: JobRunning,
		Node: j.node, StartedAt: now, UpdatedAt: now}
	j.mu.Lock()
	if id, ok := j.running[handler]; ok {
		err := runningErr(*j.jobs[id])
		j.mu.Unlock()
		return Job{}, err
	}
	// Held for the handler while the store is asked, without the lock.
	j.jobs[job.ID] = job
	j.running[handler] = job.ID
	j.mu.Unlock()
	if err := j.check(ctx, job, now); err != nil {
		j.mu.Lock()
		delete(j.jobs, job.ID)
		delete(j.running, handler)
		j.mu.Unlock()
		return Job{}, err
	}
	j.mu.Lock()
	j.order = append(j.order, job.ID)
	started := *job
	j.wg.Add(1)
	j.mu.Unlock()
	go j.run(job, fn)
	return started, nil
}

// check refuses a job while the store has another running job of its
// handler, then records it and forgets the handler's oldest finished jobs.
func (j *Jobs) check(ctx context.Context, job *Job, now time.Time) error {
	if j.store == nil {
		return nil
	}
	stored := j.store.ListJobs(job.Handler)
	for _, o := range stored {
		if o = live(o, now); o.State == JobRunning {
			return runningErr(o)
		}
	}
	if err := j.store.PutJob(ctx, *job); err != nil {
		return fmt.Errorf("recording the job: %w", err)
	}
	// Keep the newest finished jobs of the handler (stored is newest first).
	finished := 0
	for _, o := range stored {
		if o.State != JobRunning {
			if finished++; finished >= keptJobs {
				_ = j.store.DeleteJob(ctx, job.Handler, o.ID)
			}
		}
	}
	return nil
}

func runningErr(o Job) error {
	return fmt.Errorf("%w: %s job %s on node %s, started at %s, %d of %d done; wait for it (sluice dlq jobs %s %s --wait)",
		ErrJobRunning, o.Kind, o.ID, o.Node, o.StartedAt.Format(time.RFC3339), o.Done, o.Total, o.Handler, o.ID)
}

func (j *Jobs) run(job *Job, fn func(ctx context.Context, progress Progress) (int, error)) {
	defer j.wg.Done()
	// Saves are one at a time, and each waits for its write to land
	// (never cancelled midway by the job's end), so that the rows are
	// written in order and the last one is the outcome. A lost write is
	// made good by the next; the heartbeat keeps the row fresh.
	var saving sync.Mutex
	save := func() {
		if j.store == nil {
			return
		}
		saving.Lock()
		defer saving.Unlock()
		j.mu.Lock()
		job.UpdatedAt = time.Now().UTC()
		snap := *job
		j.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), 10*time.Second)
		defer cancel()
		_ = j.store.PutJob(ctx, snap)
	}
	hbDone := make(chan struct{})
	hbStopped := make(chan struct{})
	go func() {
		defer close(hbStopped)
		t := time.NewTicker(JobHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				save()
			case <-hbDone:
				return
			case <-j.ctx.Done():
				return
			}
		}
	}()
	n, err := fn(j.ctx, func(done, total int) {
		j.mu.Lock()
		job.Done, job.Total = done, total
		j.mu.Unlock()
		save()
	})
	close(hbDone)
	<-hbStopped
	j.mu.Lock()
	job.Done = max(job.Done, n)
	job.FinishedAt = time.Now().UTC()
	switch {
	case err != nil && j.ctx.Err() != nil:
		job.State, job.Error = JobFailed, fmt.Sprintf("the node stopped mid-job after %d of %d entries (the others are still dead: start the job again): %v", job.Done, job.Total, err)
	case err != nil:
		job.State, job.Error = JobFailed, err.Error()
	default:
		job.State = JobSucceeded
	}
	delete(j.running, job.Handler)
	// Forget the oldest finished jobs of this node beyond keptJobs per
	// handler (the store keeps its own).
	kept := map[string]int{}
	order := j.order[:0]
	for i := len(j.order) - 1; i >= 0; i-- {
		o := j.jobs[j.order[i]]
		if o.State != JobRunning {
			if kept[o.Handler]++; kept[o.Handler] > keptJobs {
				delete(j.jobs, o.ID)
				continue
			}
		}
		order = append(order, o.ID)
	}
	for a, b := 0, len(order)-1; a < b; a, b = a+1, b-1 {
		order[a], order[b] = order[b], order[a]
	}
	j.order = order
	j.mu.Unlock()
	// The outcome is written even if the node is stopping.
	save()
}

// Get returns handler's job id: this node's own, else the stored one.
func (j *Jobs) Get(handler, id string) (Job, error) {
	j.mu.Lock()
	job, ok := j.jobs[id]
	var out Job
	if ok && job.Handler == handler {
		out = *job
	}
	j.mu.Unlock()
	if ok && out.Handler == handler {
		return out, nil
	}
	if j.store != nil {
		if s, ok := j.store.GetJob(handler, id); ok {
			return live(s, time.Now()), nil
		}
	}
	where := "this node"
	if j.store == nil {
		where = "node " + j.node + " (a job is kept by the node that runs it, until it restarts)"
	}
	return Job{}, fmt.Errorf("%w: %q of %s on %s", ErrNoJob, id, handler, where)
}

// List returns handler's jobs, newest first: this node's and the stored
// ones.
func (j *Jobs) List(handler string) []Job {
	byID := map[string]Job{}
	if j.store != nil {
		now := time.Now()
		for _, s := range j.store.ListJobs(handler) {
			byID[s.ID] = live(s, now)
		}
	}
	j.mu.Lock()
	for _, job := range j.jobs {
		if job.Handler == handler {
			byID[job.ID] = *job
		}
	}
	j.mu.Unlock()
	out := make([]Job, 0, len(byID))
	for _, job := range byID {
		out = append(out, job)
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].StartedAt.Equal(out[b].StartedAt) {
			return out[a].StartedAt.After(out[b].StartedAt)
		}
		return out[a].ID > out[b].ID
	})
	return out
}

// Wait waits for the running jobs to end (after their context is done).
func (j *Jobs) Wait() { j.wg.Wait() }
