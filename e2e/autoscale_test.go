package e2e

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/internal/testkit"
)

// TestAutoscalerGrowsAndShrinksTheFleet plays KEDA and the HPA against a
// live fleet. Every 2s it asks node A's external scaler for its metric
// over gRPC (KEDA's own generated client), applies the HPA's formula
// ceil(value / target) with a scale-down stabilization window, and starts
// or stops real `sluice serve --brokers` processes to match (SIGTERM, and
// every third stop kill -9).
//
// The handler's per-node capacity is capped (2 at once, 20ms each: about
// 100 a second per node), and up to 500 messages a second arrive for 30s
// (a loaded machine publishes fewer; 220 a second was seen), then nothing. The fleet must grow, bring the oldest message's age back under
// maxAge, shrink back to minNodes, lose nothing, and never let two nodes
// own a partition at once.
func TestAutoscalerGrowsAndShrinksTheFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet for about two minutes")
	}
	const (
		handler, topic = "scaled", "scaled-topic"
		maxAge         = 10 * time.Second
		maxNodes       = 4
		rate, seconds  = 500, 30
		stabilization  = 20 * time.Second // the HPA's is 5 minutes; shortened for the test
	)
	extra := []string{"--log-format", "json", "--log-level", "info", "--sample-interval", "1s"}
	scalerAddr := freeAddr(t)
	a := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t),
		extra: append([]string{"--scaler-addr", scalerAddr}, extra...)}
	nodeA := &churnNode{name: "A", opts: a}
	nodeA.start(t)
	ep := newSink(t, 20*time.Millisecond)
	spec := fmt.Sprintf("name: %s\ntopic: %s\nconcurrency: 3\nhttp:\n  url: %s\n  timeout: 5s\nscaling: {maxAge: %s, minNodes: 1, maxNodes: %d}\n",
		handler, topic, ep.URL, maxAge, maxNodes)
	cli(t, a.httpAddr, spec, "handler", "apply", "-f", "-")

	conn, err := grpc.NewClient(scalerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keda := externalscaler.NewExternalScalerClient(conn)
	ref := &externalscaler.ScaledObjectRef{Name: "sluice", Namespace: "default", ScalerMetadata: map[string]string{"handler": handler}}
	ctx := context.Background()
	var target float64
	testkit.Eventually(t, 30*time.Second, func() bool {
		spec, err := keda.GetMetricSpec(ctx, ref)
		if err != nil || len(spec.MetricSpecs) != 1 {
			return false
		}
		target = spec.MetricSpecs[0].TargetSizeFloat
		return target > 0
	}, "GetMetricSpec to answer")

	// The extra nodes, started and stopped as the "HPA" says.
	var pool []*churnNode
	running := func() int {
		n := 1 // A
		for _, p := range pool {
			if p.cur != nil {
				n++
			}
		}
		return n
	}
	stops := 0
	scaleTo := func(want int) {
		for running() < want {
			var n *churnNode
			for _, p := range pool {
				if p.cur == nil {
					n = p
					break
				}
			}
			if n == nil {
				n = &churnNode{name: fmt.Sprintf("N%d", len(pool)+1), opts: serveOpts{brokers: a.kafkaAddr, httpAddr: freeAddr(t), extra: extra}}
				pool = append(pool, n)
			}
			n.start(t)
		}
		for running() > want {
			for i := len(pool) - 1; i >= 0; i-- {
				if pool[i].cur != nil {
					stops++
					if stops%3 == 0 {
						pool[i].stop(true)
					} else if code := pool[i].stop(false); code != 0 {
						t.Errorf("node %s exited with %d after SIGTERM", pool[i].name, code)
					}
					break
				}
			}
		}
	}

	// The step of arrivals, then silence.
	var acked atomic.Int64
	pubDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(pubDone)
		for sent := 0; sent < rate*seconds; {
			n := min(50, rate*seconds-sent)
			if code := publishTo(a.httpAddr, topic, "scaled-", sent, n, 1000); code == 200 {
				sent += n
				acked.Store(int64(sent))
			}
			time.Sleep(time.Duration(n) * time.Second / rate)
		}
	}()

	type point struct {
		t                time.Duration
		nodes, desired   int
		lag              int64
		oldest, received float64
		arriving         bool
	}
	var timeline []point
	var recent []struct {
		at   time.Time
		want int
	}
	peakNodes, lastReceived := 1, uint64(0)
	lastAt := time.Now()
	shrunk := time.Time{}
	for time.Since(start) < 4*time.Minute {
		time.Sleep(2 * time.Second)
		resp, err := keda.GetMetrics(ctx, &externalscaler.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "sluice-desired-nodes"})
		if err != nil || len(resp.MetricValues) != 1 {
			t.Logf("GetMetrics: %v", err)
			continue
		}
		want := int(math.Ceil(resp.MetricValues[0].MetricValueFloat / target))
		want = max(1, min(want, maxNodes)) // the ScaledObject's minReplicaCount and maxReplicaCount
		// Scale-down stabilization: the highest recommendation of the
		// window wins, as the HPA does.
		now := time.Now()
		recent = append(recent, struct {
			at   time.Time
			want int
		}{now, want})
		for len(recent) > 0 && now.Sub(recent[0].at) > stabilization {
			recent = recent[1:]
		}
		stable := 0
		for _, r := range recent {
			stable = max(stable, r.want)
		}
		if stable > running() {
			scaleTo(stable) // scaling up is not stabilized
		} else if stable < running() {
			scaleTo(stable)
		}
		peakNodes = max(peakNodes, running())

		h := getHandler(t, a.httpAddr, handler)
		p := point{t: time.Since(start).Round(time.Second), nodes: running(), desired: want}
		if h.Status != nil {
			p.lag, p.oldest = h.Status.Lag, h.Status.OldestAgeSeconds
			p.received = float64(h.Status.Received-lastReceived) / time.Since(lastAt).Seconds()
			lastReceived = h.Status.Received
		}
		lastAt = time.Now()
		timeline = append(timeline, p)
		published := false
		select {
		case <-pubDone:
			published = true
		default:
		}
		timeline[len(timeline)-1].arriving = !published
		if published && running() == 1 && p.lag == 0 && len(ep.missing("scaled-", int(acked.Load()))) == 0 {
			shrunk = time.Now()
			break
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "autoscale timeline (%d msgs/s for %ds; per node about 150/s; maxAge %s):\n", rate, seconds, maxAge)
	fmt.Fprintf(&b, "%6s %5s %7s %7s %8s %12s %9s\n", "t", "nodes", "desired", "lag", "oldest", "A rate/s", "arriving")
	for _, p := range timeline {
		fmt.Fprintf(&b, "%6s %5d %7d %7d %7.1fs %12.0f %9v\n", p.t, p.nodes, p.desired, p.lag, p.oldest, p.received, p.arriving)
	}
	fmt.Print(b.String())

	if peakNodes < 2 {
		t.Errorf("the fleet never grew past one node, for up to %d msgs/s at about 150/s a node", rate)
	}
	// Once it had grown, and while messages still arrived, the oldest
	// message's age came back under maxAge.
	grown, recovered := false, false
	for _, p := range timeline {
		grown = grown || p.nodes >= 2
		if grown && p.arriving && p.oldest > 0 && p.oldest < maxAge.Seconds() {
			recovered = true
		}
	}
	if !recovered {
		t.Errorf("the oldest message's age was never under maxAge %s while messages arrived after the fleet grew", maxAge)
	}
	if shrunk.IsZero() {
		t.Fatalf("the fleet did not shrink back to minNodes (1) with everything delivered within 4 minutes; %d nodes running", running())
	}
	last := timeline[len(timeline)-1]
	if last.oldest >= maxAge.Seconds() {
		t.Errorf("oldest message %.1fs old at the end, want under maxAge %s", last.oldest, maxAge)
	}
	want := int(acked.Load())
	if missing := ep.missing("scaled-", want); len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged messages never delivered", len(missing), want)
	}
	all := append([]*churnNode{nodeA}, pool...)
	if overlaps := ownershipOverlaps(t, all, handler, topic); len(overlaps) > 0 {
		t.Errorf("partitions had two owners at once: %v", overlaps)
	}
	fmt.Printf("autoscale: %d delivered, %d duplicates, peak %d nodes, %d stops (every third kill -9)\n", want, ep.duplicates(), peakNodes, stops)
}
