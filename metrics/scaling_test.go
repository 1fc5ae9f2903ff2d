package metrics

import (
	"strings"
	"testing"
	"time"
)

func TestDesiredNodes(t *testing.T) {
	base := scaleInput{MaxAge: 30 * time.Second, Min: 1, Max: 10, Partitions: 12, Members: 1}
	cases := []struct {
		name   string
		mod    func(in *scaleInput)
		want   int
		reason string
	}{
		{"idle goes to min", func(in *scaleInput) {}, 1, "nothing waiting or arriving"},
		{"idle scales to zero with minNodes 0", func(in *scaleInput) { in.Min = 0 }, 0, "nothing waiting"},
		// 200/s arrive, 1 node does 80/s, 3,000 wait (less 2s of
		// consumption in flight): (200 + 2840/30) / 80 = 3.68.
		{"behind", func(in *scaleInput) { in.ArrivalRate, in.Backlog, in.ConsumedRate = 200, 3000, 80 }, 4, "a node does about 80/s"},
		// The same with 4 members consuming 320/s: the per-node rate is 80.
		{"behind with more members", func(in *scaleInput) { in.ArrivalRate, in.Backlog, in.ConsumedRate, in.Members = 200, 3000, 320, 4 }, 4, ""},
		// Caught up, 200/s arriving, best per-node rate 80: 2.5.
		{"keeping up", func(in *scaleInput) { in.ArrivalRate, in.BestNodeRate, in.Members = 200, 80, 4 }, 3, ""},
		// A node at a quarter of its limit could do four times what it does.
		{"not saturated", func(in *scaleInput) { in.ArrivalRate, in.Backlog, in.ConsumedRate, in.Saturation = 200, 3000, 80, 0.25 }, 1, "a node does about 320/s"},
		// A second of commits in flight is not a backlog.
		{"commit lag is not a backlog", func(in *scaleInput) { in.ArrivalRate, in.Backlog, in.ConsumedRate, in.Saturation = 1000, 1000, 1000, 1 }, 1, "0 waiting"},
		// The oldest already waited 25s of maxAge 30s: 2840 to drain in
		// 7.5s (a quarter of maxAge at least): (200 + 379) / 80 = 7.2.
		{"the oldest is near maxAge", func(in *scaleInput) {
			in.ArrivalRate, in.Backlog, in.ConsumedRate, in.OldestAge = 200, 3000, 80, 25*time.Second
		}, 8, "to drain within 7.5s"},
		{"capped by maxNodes", func(in *scaleInput) { in.ArrivalRate, in.Backlog, in.ConsumedRate = 2000, 90000, 80 }, 10, ""},
		{"capped by partitions", func(in *scaleInput) {
			in.ArrivalRate, in.Backlog, in.ConsumedRate, in.Max, in.Partitions = 2000, 90000, 80, 100, 6
		}, 6, "capped at the topic's 6 partitions"},
		{"breaker open holds", func(in *scaleInput) { in.Backlog, in.BreakerOpen, in.Members = 5000, true, 3 }, 3, "breaker open"},
		{"nothing measured holds", func(in *scaleInput) { in.Backlog, in.Members = 5000, 2 }, 2, "no throughput measured"},
		{"nothing measured and no node", func(in *scaleInput) { in.Backlog, in.Members, in.Min = 5000, 0, 0 }, 1, "no throughput measured"},
	}
	for _, c := range cases {
		in := base
		c.mod(&in)
		n, reason, _ := desiredNodes(in)
		if n != c.want || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: got %d (%q), want %d (%q)", c.name, n, reason, c.want, c.reason)
		}
	}
}
