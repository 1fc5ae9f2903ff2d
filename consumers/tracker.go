package consumers

import "sync"

// tracker follows the messages of one partition from fetch to their final
// outcome and yields the commit position: the offset after the longest
// finished prefix. Handlers finish out of order; the position only moves
// past a message once it and everything before it have finished.
type tracker struct {
	mu      sync.Mutex
	offsets []int64 // fetched offsets, ascending, from head
	done    []bool
	head    int
	base    uint64 // sequence number of offsets[0]
	next    uint64 // sequence number of the next add
	// position is the offset of the next message to process, -1 until the
	// first message finishes.
	position int64
	// wake is signalled when the tracker shrinks, for a fetcher waiting on
	// the pending bound.
	wake chan struct{}
}

func newTracker() *tracker {
	return &tracker{position: -1, wake: make(chan struct{}, 1)}
}

// add records a fetched message and returns its sequence number.
func (t *tracker) add(offset int64) uint64 {
	t.mu.Lock()
	t.offsets = append(t.offsets, offset)
	t.done = append(t.done, false)
	seq := t.next
	t.next++
	t.mu.Unlock()
	return seq
}

// finish marks a message done and advances the position past the finished
// prefix. It reports whether the position moved.
func (t *tracker) finish(seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := int(seq - t.base)
	t.done[i] = true
	moved := false
	for t.head < len(t.offsets) && t.done[t.head] {
		t.position = t.offsets[t.head] + 1
		t.head++
		moved = true
	}
	if t.head == len(t.offsets) {
		// Everything finished: reuse the backing arrays from the start.
		t.base += uint64(t.head)
		t.offsets = t.offsets[:0]
		t.done = t.done[:0]
		t.head = 0
	} else if t.head > 1024 && t.head > len(t.offsets)/2 {
		n := copy(t.offsets, t.offsets[t.head:])
		copy(t.done, t.done[t.head:])
		t.offsets = t.offsets[:n]
		t.done = t.done[:n]
		t.base += uint64(t.head)
		t.head = 0
	}
	if moved {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	return moved
}

// pending is how many fetched messages are not yet behind the position.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.offsets) - t.head
}

// commitPosition is the offset to commit, or -1 when nothing has finished.
func (t *tracker) commitPosition() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.position
}
