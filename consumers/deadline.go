package consumers

import (
	"context"
	"sync"
	"time"
)

// deadlineCtx is context.WithDeadline made lazy: its timer and its link to
// the parent are set up only when someone asks for Done, as an HTTP client
// or a handler waiting on I/O does. A handler that returns without waiting
// on its context (the common case for fast Go handlers) costs no timer at
// all. Err and Deadline behave as context.WithDeadline's.
type deadlineCtx struct {
	context.Context // the parent
	deadline        time.Time

	once  sync.Once
	done  chan struct{}
	timer *time.Timer
	stop  func() bool

	mu  sync.Mutex
	err error
}

func withLazyDeadline(parent context.Context, d time.Time) *deadlineCtx {
	return &deadlineCtx{Context: parent, deadline: d}
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *deadlineCtx) Done() <-chan struct{} {
	c.once.Do(func() {
		c.done = make(chan struct{})
		c.stop = context.AfterFunc(c.Context, func() { c.cancel(c.Context.Err()) })
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
	})
	return c.done
}

func (c *deadlineCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
}

func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// release stops the timer and the parent link, if they were set up.
func (c *deadlineCtx) release() {
	c.once.Do(func() {}) // no Done from now on sets them up
	if c.timer != nil {
		c.timer.Stop()
		c.stop()
	}
}
