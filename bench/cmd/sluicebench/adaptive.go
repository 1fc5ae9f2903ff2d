package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/client"
)

// The adaptive family: one Sluice HTTP handler (ordering key, 1,000 keys)
// against two endpoint shapes in this process, each with a fixed limit of
// 512 and with the adaptive {min: 1, max: 512}:
//
//	unlimited  every request takes 5ms, however many run at once
//	knee       40 requests are served at once in 5ms; the rest queue
//
// The table adds the endpoint's own p99 latency (queueing included) and
// the handler's concurrency limit, sampled every 250ms once the first
// message finished. The outage shape (503s) is the simulation test
// TestAdaptiveBacksOffInAnOutageAndRecovers: an endpoint that only fails
// has no throughput to compare.
const (
	peerUnlimitedFixed    = "unlimited-fixed"
	peerUnlimitedAdaptive = "unlimited-adaptive"
	peerKneeFixed         = "knee-fixed"
	peerKneeAdaptive      = "knee-adaptive"
	peerKnee40            = "knee-fixed-40"
	peerKnee48            = "knee-fixed-48"
	adaptiveMax           = 512
	kneeSlots             = 40
	adaptiveDelay         = 5 * time.Millisecond
)

// knee-fixed-40 and knee-fixed-48 show the knee's rate curve and latency
// near the endpoint's 40 slots: the node holds a slot for longer than the
// endpoint does (its own share of each invocation), so the endpoint's 40
// fill at a node limit above 40.
var adaptivePeers = []string{peerUnlimitedFixed, peerUnlimitedAdaptive, peerKneeFixed, peerKnee40, peerKnee48, peerKneeAdaptive}

// adaptiveStats are what a run of the family measured beyond the rate.
type adaptiveStats struct {
	// Settled: from 5s after the first message finished to the end.
	p99, p50    time.Duration
	limitMean   float64
	settledRate float64
	limitLast   int
	toEightyPct time.Duration // from the first message to 80% of the best 1s rate
}

// settleAfter is how long after the first message the figures marked
// settled start: the adaptive limit's startup is over by then.
const settleAfter = 5 * time.Second

var (
	adaptiveMu      sync.Mutex
	adaptiveResults = map[string]adaptiveStats{} // by handler name
)

// runAdaptive runs one variant: fixed is its fixed limit, 0 the adaptive
// {1, adaptiveMax}.
func runAdaptive(ctx context.Context, c consumeSpec, knee bool, fixed int) error {
	var slots chan struct{}
	if knee {
		slots = make(chan struct{}, kneeSlots)
	}
	var mu sync.Mutex
	var lats []time.Duration
	var done []time.Time
	endpoint := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, _ = io.Copy(io.Discard, r.Body)
		if slots != nil {
			slots <- struct{}{}
		}
		time.Sleep(adaptiveDelay)
		if slots != nil {
			<-slots
		}
		w.WriteHeader(http.StatusOK)
		now := time.Now()
		mu.Lock()
		lats = append(lats, now.Sub(start))
		done = append(done, now)
		mu.Unlock()
		c.handleN(1)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: endpoint, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	var concurrency any = fixed
	if fixed == 0 {
		concurrency = map[string]int{"min": 1, "max": adaptiveMax}
	}
	fields := map[string]any{"name": c.name, "topic": c.topic, "concurrency": concurrency,
		"http": map[string]any{"url": "http://" + ln.Addr().String() + "/"}}
	// The limit, every 250ms from the settled point on.
	var limits []int
	err = runNode(ctx, c, fields, func(cl *client.Client, name string) {
		var firstDone time.Time
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if h, err := cl.GetHandler(context.Background(), name); err == nil && h.Status != nil && h.Status.Succeeded > 0 {
				if firstDone.IsZero() {
					firstDone = time.Now()
				}
				if time.Since(firstDone) >= settleAfter {
					limits = append(limits, h.Status.Limit)
				}
			}
		}
	})

	mu.Lock()
	st := adaptiveStats{}
	var settled []time.Duration
	if len(done) > 0 {
		from := done[0].Add(settleAfter)
		n := 0
		for i, t := range done {
			if !t.Before(from) {
				settled = append(settled, lats[i])
				n++
			}
		}
		if n > 0 {
			st.settledRate = float64(n) / done[len(done)-1].Sub(from).Seconds()
		}
	}
	if len(settled) > 0 {
		sort.Slice(settled, func(i, j int) bool { return settled[i] < settled[j] })
		st.p50, st.p99 = settled[len(settled)/2], settled[len(settled)*99/100]
	}
	if len(done) > 0 {
		// Per-second rates from the first finish; 80% of the best second.
		first := done[0]
		var perSec []int
		for _, t := range done {
			i := int(t.Sub(first) / time.Second)
			for len(perSec) <= i {
				perSec = append(perSec, 0)
			}
			perSec[i]++
		}
		best := 0
		for _, n := range perSec {
			best = max(best, n)
		}
		for i, n := range perSec {
			if float64(n) >= 0.8*float64(best) {
				st.toEightyPct = time.Duration(i+1) * time.Second
				break
			}
		}
	}
	mu.Unlock()
	if len(limits) > 0 {
		sum := 0
		for _, l := range limits {
			sum += l
		}
		st.limitMean, st.limitLast = float64(sum)/float64(len(limits)), limits[len(limits)-1]
	}
	adaptiveMu.Lock()
	adaptiveResults[c.name] = st
	adaptiveMu.Unlock()
	return err
}

func reportAdaptive(w io.Writer, o options, rows []result) {
	f := rows[0].family
	fmt.Fprintf(w, "\n== %s: %d x %d-byte messages backlogged, %d partitions, %d keys, Sluice HTTP handler (ordering key) to an endpoint in this process taking %s",
		f.name, f.messages, o.size, o.partitions, f.keys, adaptiveDelay)
	if o.rounds > 1 {
		fmt.Fprintf(w, ", median of %d rounds", o.rounds)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\tprocessed\twall\tmsgs/s\tsettled msgs/s\tto 80% of best 1s\tsettled p50\tsettled p99\tsettled mean limit\t\tnote")
	byPeer := map[string]result{}
	settledRates := map[string]float64{}
	for _, r := range rows {
		byPeer[r.peer] = r
		adaptiveMu.Lock()
		st := adaptiveResults[fmt.Sprintf("bench-%s-%s-%d", f.name, r.peer, r.round)]
		adaptiveMu.Unlock()
		note := ""
		switch r.peer {
		case peerUnlimitedFixed, peerKneeFixed:
			note = fmt.Sprintf("concurrency %d", adaptiveMax)
		case peerKnee40:
			note = "concurrency 40"
		case peerKnee48:
			note = "concurrency 48"
		default:
			note = fmt.Sprintf("concurrency {min: 1, max: %d}", adaptiveMax)
		}
		if strings.HasPrefix(r.peer, "knee-") {
			note += fmt.Sprintf("; the endpoint serves %d at once", kneeSlots)
		}
		if r.err != nil {
			note += "; error: " + r.err.Error()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%.0f\t\t%s\n", r.peer, r.processed, r.wall.Round(time.Millisecond), r.wallRate(), st.settledRate,
			st.toEightyPct, st.p50.Round(100*time.Microsecond), st.p99.Round(100*time.Microsecond), st.limitMean, note)
		settledRates[r.peer] = st.settledRate
	}
	tw.Flush()
	if a, b := byPeer[peerUnlimitedAdaptive], byPeer[peerUnlimitedFixed]; a.processed > 0 && b.processed > 0 {
		fmt.Fprintf(w, "unlimited: adaptive / fixed %d msgs/s %s, settled %s\n", adaptiveMax, ratio(a.wallRate(), b.wallRate()),
			ratio(settledRates[peerUnlimitedAdaptive], settledRates[peerUnlimitedFixed]))
	}
	if a, b := byPeer[peerKneeAdaptive], byPeer[peerKneeFixed]; a.processed > 0 && b.processed > 0 {
		fmt.Fprintf(w, "knee: adaptive / fixed %d msgs/s %s, settled %s\n", adaptiveMax, ratio(a.wallRate(), b.wallRate()),
			ratio(settledRates[peerKneeAdaptive], settledRates[peerKneeFixed]))
	}
}
