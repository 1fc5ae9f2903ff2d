package consumers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// The crash-loop guard, for Go handlers: an HTTP invocation runs in
// another process and cannot crash the node.
//
// Attempt counts of the retry policy live in memory: a message that
// crashes the node (or that is in flight at every kill, or outlasts every
// drain) would be retried forever and never reach maxAttempts. So the
// count of sessions that started a message and ended without finishing it
// is kept durably, as the metadata of the partition's committed offset: any
// commit past the message resets it, and nothing else is written.
//
//   - The first message of a partition in a session is marked with the
//     count read back with the offset, plus one, before it runs.
//   - A count of 1 or more means the last session ended with the message
//     unfinished: perhaps it crashed the node, perhaps it was only in
//     flight beside the one that did. The partition then runs careful: one
//     message at a time, each alone in the process (no other Go invocation
//     runs beside it) and marked just before it runs, for as many messages
//     as the handler may run at once (at most maxCareful). A crash then is that
//     message's alone, so an innocent neighbour finishes and moves on, and
//     counts above 1 are only ever charged to a message that ran alone.
//   - A message whose count has reached the handler's maxAttempts (and 2)
//     is not invoked again: it is dead-lettered with a CrashLoopError.

// alone is held for writing by a careful message's attempt, and for
// reading by every other Go attempt in the process: a process crash kills
// every handler's invocations, so "alone" means alone in the process.
var alone sync.RWMutex

// maxCareful bounds a careful run: its messages hold every other Go
// invocation of the process back.
const maxCareful = 64

// attemptsPrefix starts the offset metadata that carries a count.
const attemptsPrefix = "sluice:attempts="

// maxRecordedAttempts bounds a count read back: the metadata is writable
// by any client of the group.
const maxRecordedAttempts = 1000

// attemptsMetadata is the offset metadata recording n attempts.
func attemptsMetadata(n int) string { return attemptsPrefix + strconv.Itoa(n) }

// parseAttempts reads a count from offset metadata; 0 for anything that is
// not exactly one of ours.
func parseAttempts(meta string) int {
	v, ok := strings.CutPrefix(meta, attemptsPrefix)
	if !ok || len(v) == 0 || len(v) > 4 {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxRecordedAttempts || strconv.Itoa(n) != v {
		return 0
	}
	return n
}

// CrashLoopError is the failure of a message that was in flight when
// Sessions consecutive sessions ended without finishing it.
type CrashLoopError struct{ Sessions int }

func (e *CrashLoopError) Error() string {
	return fmt.Sprintf("crash loop: the message was in flight when %d consecutive sessions ended without finishing it (the node crashed or was killed, or the drain timed out); it is not invoked again", e.Sessions)
}

// RecordAttempt commits offset with its count (AttemptRecorder).
func (k *kafkaSession) RecordAttempt(ctx context.Context, topic string, partition int, offset int64, attempts int) error {
	return k.m.commitWith(ctx, k.gen, map[string]map[int]int64{topic: {partition: offset}},
		map[string]map[int]string{topic: {partition: attemptsMetadata(attempts)}})
}

// crashGuard is one partition's part of the guard in one session.
type crashGuard struct {
	rec AttemptRecorder
	// mark: the next message fetched is to be marked (the first of the
	// session, the first after a careful run, and each one in it).
	mark bool
	// start and prior: the assignment's offset and the count read with it.
	start int64
	prior int
	// careful is how many more messages run one at a time.
	careful int
}

// carefulRun is a careful message's state: its count before this session,
// and whether its mark was written.
type carefulRun struct {
	rec    AttemptRecorder
	prior  int
	marked bool
}

func (r *Runner) newCrashGuard(ss *session, a Assignment) *crashGuard {
	rec, ok := ss.src.(AttemptRecorder)
	if !ok || r.spec.Go == nil {
		return nil
	}
	return &crashGuard{rec: rec, mark: true, start: a.Offset, prior: a.Attempts}
}

// guard prepares w before it is dispatched. It returns false when w is not
// to be invoked: its count reached maxAttempts, and it was handed to the
// failure policy as a CrashLoopError (dead-lettered).
func (r *Runner) guard(ctx context.Context, ss *session, g *crashGuard, p *partition, w *work) bool {
	if !g.mark {
		return true
	}
	prior := 0
	if w.offset == g.start {
		prior = g.prior
	}
	g.start, g.prior = -1, 0 // only the assignment's first message has one
	if prior > 0 && g.careful == 0 {
		g.careful = min(max(1, r.spec.Concurrency.Max), maxCareful)
		r.log.Warn("the last session ended with this message unfinished; running the partition one message at a time, alone on the node",
			"topic", p.topic, "partition", p.id, "offset", w.offset, "sessions", prior, "careful_messages", g.careful)
	}
	g.mark = g.careful > 0
	// A count of 1 may come from a session in which the message ran beside
	// others; a higher one only from runs alone. So at least one crash
	// alone is required, whatever maxAttempts says.
	if prior >= max(r.spec.Retry.MaxAttempts, 2) {
		r.log.Error("crash loop; dead-lettering without invoking", "topic", p.topic, "partition", p.id,
			"offset", w.offset, "sessions", prior)
		w.inlineTries, w.inlineErr = prior, handlers.Permanent(&CrashLoopError{Sessions: prior})
		r.start(ss, w, "", nil)
		r.afterCareful(ctx, g, p)
		return false
	}
	if g.careful > 0 {
		// Marked by its attempt, once it runs alone.
		w.careful = &carefulRun{rec: g.rec, prior: prior}
		return true
	}
	r.recordAttempt(ctx, ss, g.rec, p, w.offset, prior+1)
	return true
}

// lockForAttempt takes the process-wide lock for one attempt of w: alone
// for a careful message (marked on its first attempt), shared otherwise.
func (r *Runner) lockForAttempt(ctx context.Context, ss *session, w *work) func() {
	if r.spec.Go == nil {
		return func() {} // an HTTP invocation cannot crash the node
	}
	if w.careful == nil {
		alone.RLock()
		return alone.RUnlock
	}
	unlock := alone.Unlock
	if !lockAlone(ctx, r.timeout) {
		// An invocation that ignores its context (a Go handler that never
		// returns) must not stall the partition: run it beside the others.
		r.log.Warn("a careful message could not run alone: other Go invocations did not finish; running it beside them",
			"topic", w.p.topic, "partition", w.p.id, "offset", w.offset)
		unlock = func() {}
	}
	if !w.careful.marked {
		w.careful.marked = true
		r.recordAttempt(ctx, ss, w.careful.rec, w.p, w.offset, w.careful.prior+1)
	}
	return unlock
}

// lockAlone takes alone for writing, waiting at most wait (at least 1s, at
// most 30s) for the Go invocations in flight to finish; false if they did
// not. TryLock, not Lock: a pending Lock would hold every new reader back
// behind an invocation that may never return.
func lockAlone(ctx context.Context, wait time.Duration) bool {
	deadline := time.Now().Add(min(max(wait, time.Second), 30*time.Second))
	for !alone.TryLock() {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// recordAttempt writes a mark, retrying for a few seconds; a mark that
// cannot be written costs only the guard.
func (r *Runner) recordAttempt(ctx context.Context, ss *session, rec AttemptRecorder, p *partition, offset int64, attempts int) {
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		err := r.timedCommit(func() error {
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return rec.RecordAttempt(mctx, p.topic, p.id, offset, attempts)
		})
		if err == nil {
			if offset > p.committed.Load() {
				p.committed.Store(offset)
			}
			return
		}
		if ctx.Err() != nil || backoff >= 2*time.Second {
			r.log.Warn("recording a message's attempt failed; its crash-loop count is not kept",
				"topic", p.topic, "partition", p.id, "offset", offset, "err", err)
			return
		}
		if !sleepCtx(ctx, backoff) {
			return
		}
	}
}

// commitPast commits the position after a careful message that succeeded:
// in careful mode it is the partition's only message in flight, so that is
// the position the tracker reaches once it is finished.
func (r *Runner) commitPast(ctx context.Context, ss *session, w *work) {
	p := w.p
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
	next := w.offset + 1
	if next <= p.committed.Load() {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.timedCommit(func() error { return ss.src.Commit(cctx, map[string]map[int]int64{p.topic: {p.id: next}}) }); err != nil {
		r.log.Warn("committing past a careful message failed; the periodic commit will", "topic", p.topic,
			"partition", p.id, "offset", w.offset, "err", err)
		return
	}
	p.committed.Store(next)
}

// afterCareful, in careful mode, waits for the message just dispatched to
// finish (or the assignment to end) before the next is fetched.
func (r *Runner) afterCareful(ctx context.Context, g *crashGuard, p *partition) {
	if g == nil || g.careful == 0 {
		return
	}
	g.careful--
	for p.tr.pending() > 0 {
		select {
		case <-p.tr.wake:
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Careful or not, the next message is marked: it starts a new run.
	g.mark = true
}
