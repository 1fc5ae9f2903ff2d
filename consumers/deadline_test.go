package consumers

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLazyDeadlineBehavesLikeWithDeadline(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := withLazyDeadline(parent, time.Now().Add(50*time.Millisecond))
	if d, ok := c.Deadline(); !ok || d.IsZero() {
		t.Fatal("no deadline")
	}
	if c.Err() != nil {
		t.Fatal("expired early")
	}
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done never closed at the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v", c.Err())
	}
	c.release()

	// Without Done, the deadline still shows in Err.
	c2 := withLazyDeadline(parent, time.Now().Add(-time.Millisecond))
	if !errors.Is(c2.Err(), context.DeadlineExceeded) {
		t.Fatalf("past deadline: Err %v", c2.Err())
	}
	c2.release()

	// The parent's cancellation reaches Done and Err.
	c3 := withLazyDeadline(parent, time.Now().Add(time.Hour))
	done := c3.Done()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("parent cancel did not close Done")
	}
	if !errors.Is(c3.Err(), context.Canceled) {
		t.Fatalf("Err %v", c3.Err())
	}
	c3.release()

	// A derived context sees the deadline.
	c4 := withLazyDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
	child, stop := context.WithCancel(c4)
	defer stop()
	select {
	case <-child.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("a child context missed the deadline")
	}
	c4.release()
}
