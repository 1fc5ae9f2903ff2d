package consumers

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/sluicehq/sluice/handlers"
)

// breaker pauses a handler's consumption while its downstream is failing.
// It wraps gobreaker's two-step breaker: invocations report their outcome,
// outage failures count against it, and while it is open the engine
// fetches and invokes nothing.
type breaker struct {
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]

	// notClosed is false while the breaker is closed: the fetch path reads
	// it without taking gobreaker's lock.
	notClosed atomic.Bool

	mu      sync.Mutex
	changed time.Time
	opened  uint64
	wake    chan struct{} // closed and replaced on every state change
}

// errOutage marks an outcome that counts against the breaker.
var errOutage = errors.New("outage")

func newBreaker(name string, spec *handlers.BreakerSpec) *breaker {
	if spec == nil || spec.Disabled {
		return nil
	}
	b := &breaker{changed: time.Now(), wake: make(chan struct{})}
	ratio, minReq := spec.FailureRatio, uint32(spec.MinRequests)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Interval:    spec.Window.D(),
		Timeout:     spec.OpenFor.D(),
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= minReq && float64(c.TotalFailures)/float64(c.Requests) >= ratio
		},
		IsSuccessful: func(err error) bool { return !errors.Is(err, errOutage) },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			b.notClosed.Store(to != gobreaker.StateClosed)
			b.mu.Lock()
			b.changed = time.Now()
			if to == gobreaker.StateOpen {
				b.opened++
			}
			close(b.wake)
			b.wake = make(chan struct{})
			b.mu.Unlock()
		},
	})
	return b
}

// state is closed, half-open or open. A nil breaker is always closed.
func (b *breaker) state() gobreaker.State {
	if !b.tripped() {
		return gobreaker.StateClosed
	}
	return b.cb.State()
}

// allow asks to invoke; done reports the outcome (nil, errOutage, or any
// other error for a failure that says nothing about the downstream).
func (b *breaker) allow() (done func(error), ok bool) {
	if b == nil {
		return func(error) {}, true
	}
	done, err := b.cb.Allow()
	if err != nil {
		return nil, false
	}
	return done, true
}

// changedCh is closed at the next state change.
func (b *breaker) changedCh() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wake
}

// BreakerStatus is the breaker's state for the API.
type BreakerStatus struct {
	State     string    `json:"state"`
	ChangedAt time.Time `json:"changedAt"`
	Opened    uint64    `json:"opened"`
}

func (b *breaker) status() *BreakerStatus {
	if b == nil {
		return &BreakerStatus{State: "disabled"}
	}
	st := b.cb.State() // may move open to half-open, calling OnStateChange
	b.mu.Lock()
	defer b.mu.Unlock()
	return &BreakerStatus{State: st.String(), ChangedAt: b.changed, Opened: b.opened}
}

// tripped reports whether the breaker is open or half-open; cheap.
func (b *breaker) tripped() bool { return b != nil && b.notClosed.Load() }
