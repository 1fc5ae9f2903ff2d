package metrics

import (
	"testing"
	"time"
)

func TestLatencyQuantilesAndReset(t *testing.T) {
	var l latencies
	for i := 0; i < 90; i++ {
		l.observe(2 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		l.observe(200 * time.Millisecond)
	}
	p50, p99 := l.quantiles(0.5, 0.99)
	// Buckets are about 20% wide: the reported value is the bucket's top.
	if p50 < 2 || p50 > 2.5 {
		t.Fatalf("p50 %.3fms, want about 2ms", p50)
	}
	if p99 < 200 || p99 > 245 {
		t.Fatalf("p99 %.3fms, want about 200ms", p99)
	}
	if a, b := l.quantiles(0.5, 0.99); a != 0 || b != 0 {
		t.Fatalf("after a read the window is empty, got %v %v", a, b)
	}
	l.observe(0)
	l.observe(time.Hour) // past the last bucket: clamped, not lost
	if _, p99 := l.quantiles(0.5, 0.99); p99 < 60000 {
		t.Fatalf("an hour-long call reads as %vms", p99)
	}
}
