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
// running on this node.
var ErrJobRunning = errors.New("a dead-letter job of this handler is running")

// ErrNoJob is returned for a job id this node does not know.
var ErrNoJob = errors.New("dead-letter job not found")

// Job is a replay or purge that runs in the node, not in the request that
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
	Done       int       `json:"done"`
	Total      int       `json:"total"`
	Error      string    `json:"error,omitempty"`
	Node       string    `json:"node,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// keptJobs bounds how many finished jobs a node remembers.
const keptJobs = 100

// Jobs runs dead-letter jobs, at most one at a time per handler, and keeps
// their progress in memory: a job is visible from the node that runs it
// (and until that node restarts, or keptJobs newer jobs finished). A job
// cut short by a crash is not resumed; the entries it did not mark stay
// dead, so starting it again finishes it. Safe for concurrent use.
type Jobs struct {
	ctx  context.Context
	node string

	mu       sync.Mutex
	jobs     map[string]*Job
	finished []string // ids, oldest first
	running  map[string]string
	wg       sync.WaitGroup
}

// NewJobs returns a job runner whose jobs run under ctx (the node's life:
// cancelling it stops them) and are labelled with node.
func NewJobs(ctx context.Context, node string) *Jobs {
	return &Jobs{ctx: ctx, node: node, jobs: map[string]*Job{}, running: map[string]string{}}
}

// Start runs fn as a job of handler in the background and returns it as
// started. fn reports its progress; its count and error are the job's
// outcome. While handler has a running job, Start returns ErrJobRunning.
func (j *Jobs) Start(handler, kind, topic string, fn func(ctx context.Context, progress Progress) (int, error)) (Job, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	job := &Job{ID: hex.EncodeToString(b[:]), Handler: handler, Kind: kind, Topic: topic, State: JobRunning,
		Node: j.node, StartedAt: time.Now().UTC()}
	j.mu.Lock()
	if id, ok := j.running[handler]; ok {
		other := *j.jobs[id]
		j.mu.Unlock()
		return Job{}, fmt.Errorf("%w: %s job %s started at %s, %d of %d done; wait for it or follow it",
			ErrJobRunning, other.Kind, other.ID, other.StartedAt.Format(time.RFC3339), other.Done, other.Total)
	}
	j.jobs[job.ID] = job
	j.running[handler] = job.ID
	started := *job
	j.wg.Add(1)
	j.mu.Unlock()
	go func() {
		defer j.wg.Done()
		n, err := fn(j.ctx, func(done, total int) {
			j.mu.Lock()
			job.Done, job.Total = done, total
			j.mu.Unlock()
		})
		j.mu.Lock()
		defer j.mu.Unlock()
		job.Done = max(job.Done, n)
		job.FinishedAt = time.Now().UTC()
		if err != nil {
			job.State, job.Error = JobFailed, err.Error()
		} else {
			job.State = JobSucceeded
		}
		delete(j.running, handler)
		j.finished = append(j.finished, job.ID)
		if len(j.finished) > keptJobs {
			delete(j.jobs, j.finished[0])
			j.finished = j.finished[1:]
		}
	}()
	return started, nil
}

// Get returns handler's job id.
func (j *Jobs) Get(handler, id string) (Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.jobs[id]
	if !ok || job.Handler != handler {
		return Job{}, fmt.Errorf("%w: %q of %s on node %s (a job is kept by the node that runs it, until it restarts)", ErrNoJob, id, handler, j.node)
	}
	return *job, nil
}

// List returns handler's jobs on this node, newest first.
func (j *Jobs) List(handler string) []Job {
	j.mu.Lock()
	out := []Job{}
	for _, job := range j.jobs {
		if job.Handler == handler {
			out = append(out, *job)
		}
	}
	j.mu.Unlock()
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
