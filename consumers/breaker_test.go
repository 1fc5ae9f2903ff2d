package consumers

import (
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/sluicehq/sluice/handlers"
)

func TestBreakerTripsOnOutageRatioAndRecovers(t *testing.T) {
	b := newBreaker("h", &handlers.BreakerSpec{FailureRatio: 0.5, MinRequests: 10, OpenFor: handlers.Duration(50 * time.Millisecond), Window: handlers.Duration(time.Minute)})
	report := func(err error) {
		done, ok := b.allow()
		if !ok {
			t.Fatal("breaker refused while closed")
		}
		done(err)
	}
	// Permanent failures say nothing about the downstream.
	for i := 0; i < 20; i++ {
		report(errors.New("bad message"))
	}
	if b.state() != gobreaker.StateClosed {
		t.Fatal("non-outage failures tripped the breaker")
	}
	b = newBreaker("h", &handlers.BreakerSpec{FailureRatio: 0.5, MinRequests: 10, OpenFor: handlers.Duration(50 * time.Millisecond), Window: handlers.Duration(time.Minute)})
	for i := 0; i < 5; i++ {
		report(nil)
	}
	for i := 0; i < 4; i++ {
		report(errOutage)
	}
	if b.state() != gobreaker.StateClosed {
		t.Fatal("tripped below minRequests")
	}
	report(errOutage) // 10 requests, 5 failures: ratio 0.5
	if b.state() != gobreaker.StateOpen {
		t.Fatalf("state %s, want open", b.state())
	}
	if _, ok := b.allow(); ok {
		t.Fatal("an open breaker allowed a request")
	}
	st := b.status()
	if st.State != "open" || st.Opened != 1 {
		t.Fatalf("status %+v", st)
	}
	time.Sleep(60 * time.Millisecond)
	if b.state() != gobreaker.StateHalfOpen {
		t.Fatalf("state %s after openFor, want half-open", b.state())
	}
	done, ok := b.allow()
	if !ok {
		t.Fatal("half-open refused the probe")
	}
	if _, ok := b.allow(); ok {
		t.Fatal("half-open allowed a second concurrent probe")
	}
	done(nil)
	if b.state() != gobreaker.StateClosed {
		t.Fatalf("state %s after a good probe, want closed", b.state())
	}
}

func TestDisabledBreakerIsAlwaysClosed(t *testing.T) {
	b := newBreaker("h", &handlers.BreakerSpec{Disabled: true})
	for i := 0; i < 100; i++ {
		done, ok := b.allow()
		if !ok {
			t.Fatal("disabled breaker refused")
		}
		done(errOutage)
	}
	if b.state() != gobreaker.StateClosed || b.status().State != "disabled" {
		t.Fatal("disabled breaker changed state")
	}
}
