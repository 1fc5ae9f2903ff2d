package consumers

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// batcher gathers the messages that are ready to run into batches of up to
// size, waiting at most window to fill one. Messages arrive one per
// ordering chain (a key, a partition, or each message with ordering none),
// so a batch never holds two messages that must stay in order; each
// message's outcome goes back to its own chain, which applies the failure
// policy to it alone.
type batcher struct {
	r      *Runner
	inv    handlers.BatchInvoker
	size   int
	window time.Duration
	in     chan *batchItem

	mu   sync.Mutex // guards stop and done, one pair per session
	stop chan struct{}
	done chan struct{}
}

// batchItem is one message waiting in a batch, and where its outcome goes.
type batchItem struct {
	m   *handlers.Message
	res chan error
}

func newBatcher(r *Runner, inv handlers.BatchInvoker, spec *handlers.BatchSpec) *batcher {
	return &batcher{r: r, inv: inv, size: spec.Size, window: spec.Window.D(), in: make(chan *batchItem)}
}

// start runs the gathering loop for one session, until close or until
// ctx (the session's invocations) ends: a session whose drain gave up on
// hung invocations does not close it, and its loop must not gather the next
// session's messages into batches flushed with a cancelled context. Each
// loop keeps its own stop and done channels.
func (b *batcher) start(ctx context.Context) {
	stop, done := make(chan struct{}), make(chan struct{})
	b.mu.Lock()
	b.stop, b.done = stop, done
	b.mu.Unlock()
	go func() {
		defer close(done)
		for {
			var first *batchItem
			select {
			case first = <-b.in:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
			batch := []*batchItem{first}
			t := time.NewTimer(b.window)
		fill:
			for len(batch) < b.size {
				select {
				case p := <-b.in:
					batch = append(batch, p)
				case <-t.C:
					break fill
				case <-stop:
					break fill
				case <-ctx.Done():
					break fill
				}
			}
			t.Stop()
			go b.flush(ctx, batch)
		}
	}()
}

func (b *batcher) close() {
	b.mu.Lock()
	stop, done := b.stop, b.done
	b.mu.Unlock()
	close(stop)
	<-done
}

// invoke submits m and waits for its own outcome.
func (b *batcher) invoke(m *handlers.Message) error {
	p := &batchItem{m: m, res: make(chan error, 1)}
	b.in <- p
	return <-p.res
}

func (b *batcher) flush(parent context.Context, batch []*batchItem) {
	r := b.r
	ctx, cancel := context.WithTimeout(parent, r.timeout)
	defer cancel()
	ms := make([]*handlers.Message, len(batch))
	ends := make([]func(error), len(batch))
	for i, p := range batch {
		ms[i] = p.m
		if r.opts.Hooks.Invoke != nil {
			_, ends[i] = r.opts.Hooks.Invoke(ctx, p.m)
		}
	}
	start := time.Now()
	err := r.asTimeout(ctx, parent, b.inv.InvokeBatch(ctx, ms))
	d := time.Since(start)
	var be *handlers.BatchError
	partial := errors.As(err, &be)
	for i, p := range batch {
		e := err
		if partial {
			e = be.Failed[p.m]
		}
		r.settle(p.m, e, d, ends[i])
		p.res <- e
	}
	r.adaptLimit()
}
