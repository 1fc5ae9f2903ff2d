package metrics

import (
	"fmt"
	"math"
	"time"
)

// scaleInput is what the fleet's desired size for one handler is computed
// from. The rates and the backlog are group-wide, read from the broker, so
// every node computes about the same answer.
type scaleInput struct {
	// Backlog is the messages not yet consumed on the handler's topic and
	// replay topic. Messages parked on retry topics are not in it: more
	// nodes would not make their delays pass sooner.
	Backlog float64
	// ArrivalRate is messages per second produced to those topics.
	ArrivalRate float64
	// ConsumedRate is messages per second the group's committed offsets
	// advance.
	ConsumedRate float64
	// BestNodeRate is the highest per-node rate measured while a backlog
	// kept the nodes busy, over the last 15 minutes; 0 when none was.
	BestNodeRate float64
	// Members is the nodes in the handler's group now.
	Members int
	// Partitions of the handler's topic: more members than that idle.
	Partitions int
	// BreakerOpen: the downstream is failing on this node.
	BreakerOpen bool
	// Saturation is this node's in-flight messages over its concurrency
	// limit at the sample (0 when it runs none). Below 0.8 the nodes are
	// not what bounds the rate, and what they consume is less than what
	// they could.
	Saturation float64
	MaxAge     time.Duration
	// OldestAge is how long the oldest unprocessed message has waited.
	OldestAge time.Duration
	Min, Max  int
}

// desiredNodes is how many nodes the handler needs, with the reason in
// words. With a backlog the per-node rate is measured (the group's rate
// over its members); the fleet must take in the arrivals and drain the
// backlog within maxAge:
//
//	nodes = ⌈(arrival rate + backlog / maxAge) / per-node rate⌉
//
// where the backlog's deadline is what is left of maxAge for its oldest
// message (at least a quarter of maxAge), bounded by minNodes and maxNodes
// and by the partition count. An open
// breaker holds the fleet where it is: the downstream is down, and more
// nodes would not help.
func desiredNodes(in scaleInput) (n int, reason string, nodeRate float64) {
	bound := func(n int) int {
		n = max(n, in.Min)
		n = min(n, in.Max)
		if in.Partitions > 0 {
			n = min(n, in.Partitions)
		}
		return n
	}
	if in.BreakerOpen {
		return bound(in.Members), fmt.Sprintf("breaker open: the endpoint is failing and more nodes would not help; holding at %d", bound(in.Members)), 0
	}
	if in.Backlog == 0 && in.ArrivalRate < 0.01 {
		return bound(0), "nothing waiting or arriving", 0
	}
	// What is fetched and running but not yet committed is not a backlog:
	// two seconds of consumption (two commit intervals) are left out.
	backlog := math.Max(0, in.Backlog-2*in.ConsumedRate)
	perNode := in.BestNodeRate
	if in.Backlog > 0 && in.ConsumedRate > 0 && in.Members > 0 {
		rate := in.ConsumedRate / float64(in.Members)
		if in.Saturation > 0 && in.Saturation < 0.8 {
			// Little's law: at its full limit a node would do about this.
			rate /= math.Max(in.Saturation, 0.1)
		} else {
			nodeRate = rate // measured at the limit: a capacity
		}
		perNode = math.Max(perNode, rate)
	}
	if perNode <= 0 {
		n := bound(max(in.Members, 1))
		return n, fmt.Sprintf("%.0f waiting and no throughput measured yet; holding at %d", in.Backlog, n), 0
	}
	// The backlog is to be drained before its oldest message is maxAge
	// old: within what is left of maxAge, and no less than a quarter of it
	// once the oldest is already past it.
	horizon := max(in.MaxAge-in.OldestAge, in.MaxAge/4)
	need := (in.ArrivalRate + backlog/horizon.Seconds()) / perNode
	n = bound(int(math.Ceil(need - 0.05)))
	reason = fmt.Sprintf("%.0f/s arriving and %.0f waiting (the oldest %s old), to drain within %s; a node does about %.0f/s",
		in.ArrivalRate, backlog, in.OldestAge.Round(time.Second), horizon.Round(100*time.Millisecond), perNode)
	if in.Partitions > 0 && n == in.Partitions && int(math.Ceil(need-0.05)) > n {
		reason += fmt.Sprintf("; capped at the topic's %d partitions", in.Partitions)
	}
	return n, reason, nodeRate
}
