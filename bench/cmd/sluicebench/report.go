package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report prints, per scenario family, one row per peer (the median round
// by wall rate when -rounds > 1) and the ratios of each Sluice mode to each
// peer, on the wall rate and on the steady rate; for http, the batched
// variant against the single one; for latency, one row per round.
func report(w io.Writer, o options, results []result) {
	for _, fam := range o.scenarios {
		if fam == "latency" {
			reportLatency(w, o, results)
			continue
		}
		if fam == "queues" {
			reportQueues(w, o, results)
			continue
		}
		peers := o.peers
		switch fam {
		case "http":
			peers = httpPeers
		case "adaptive":
			peers = adaptivePeers
		}
		var rows []result
		for _, p := range peers {
			var rs []result
			for _, r := range results {
				if r.family.name == fam && r.peer == p {
					rs = append(rs, r)
				}
			}
			if len(rs) > 0 {
				m := median(rs)
				lo, hi := rs[0].wallRate(), rs[0].wallRate()
				for _, r := range rs {
					lo, hi = min(lo, r.wallRate()), max(hi, r.wallRate())
				}
				m.spread = fmt.Sprintf("%.0f-%.0f", lo, hi)
				rows = append(rows, m)
			}
		}
		if len(rows) == 0 {
			continue
		}
		f := rows[0].family
		if fam == "http" {
			reportHTTP(w, o, rows)
			continue
		}
		if fam == "adaptive" {
			reportAdaptive(w, o, rows)
			continue
		}
		fmt.Fprintf(w, "\n== %s: %d x %d-byte messages, %d partitions, %d keys, handler %s", f.name, f.messages, o.size, o.partitions, f.keys, handlerName(f))
		if o.rounds > 1 {
			fmt.Fprintf(w, ", median of %d rounds", o.rounds)
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "peer\tprocessed\twall\tmsgs/s\tmin-max msgs/s\tto first msg\tsteady msgs/s\tCPU/msg\tothers' CPU\t\tnote")
		for _, r := range rows {
			note := ""
			switch {
			case r.err != nil:
				note = "error: " + r.err.Error()
			case r.capped:
				note = fmt.Sprintf("stopped at %s", f.limit)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%s\t%.0f\t%s\t%.0f%%\t\t%s\n", r.peer, r.processed, r.wall.Round(time.Millisecond),
				r.wallRate(), r.spread, r.toFirst.Round(time.Millisecond), r.steadyRate(), r.cpuPerMsg().Round(10*time.Nanosecond), 100*r.othersShare(), note)
		}
		tw.Flush()

		fmt.Fprintln(w, "Sluice / peer: wall msgs/s ; steady msgs/s (CPU per message, lower is cheaper):")
		for _, s := range rows {
			if !strings.HasPrefix(s.peer, "sluice") {
				continue
			}
			for _, p := range rows {
				if strings.HasPrefix(p.peer, "sluice") {
					continue
				}
				fmt.Fprintf(w, "  %-11s / %-9s  %7s ; %7s   (CPU per message: %s)\n", s.peer, p.peer,
					ratio(s.wallRate(), p.wallRate()), ratio(s.steadyRate(), p.steadyRate()), ratio(float64(s.cpuPerMsg()), float64(p.cpuPerMsg())))
			}
		}
		if f.delay > 0 {
			bound := float64(o.concurrency) / f.delay.Seconds()
			fmt.Fprintf(w, "Little's-law bound for Sluice: concurrency %d / %s = %.0f msgs/s\n", o.concurrency, f.delay, bound)
			for _, s := range rows {
				if strings.HasPrefix(s.peer, "sluice") {
					fmt.Fprintf(w, "  %-11s reaches %.1f%% of it (steady %.1f%%)\n", s.peer, 100*s.wallRate()/bound, 100*s.steadyRate()/bound)
				}
			}
		}
	}
}

// reportHTTP prints the http family's table, with the CPU time per 1,000
// messages, and the batched variant's figures over the single one's.
func reportHTTP(w io.Writer, o options, rows []result) {
	f := rows[0].family
	fmt.Fprintf(w, "\n== %s: %d x %d-byte messages, %d partitions, %d keys, Sluice HTTP handler (ordering none, concurrency %d) to a no-op endpoint in this process",
		f.name, f.messages, o.size, o.partitions, f.keys, f.concurrency)
	if o.rounds > 1 {
		fmt.Fprintf(w, ", median of %d rounds", o.rounds)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\tprocessed\twall\tmsgs/s\tmin-max msgs/s\tto first msg\tCPU/1,000 msgs\tothers' CPU\t\tnote")
	var single, batched *result
	for i, r := range rows {
		note := ""
		switch r.peer {
		case peerHTTPSingle:
			single, note = &rows[i], "one message per request"
		case peerHTTPBatch:
			batched, note = &rows[i], fmt.Sprintf("batch: {size: %d, window: %s}", httpBatchSize, httpBatchWindow)
		}
		switch {
		case r.err != nil:
			note += "; error: " + r.err.Error()
		case r.capped:
			note += fmt.Sprintf("; stopped at %s", f.limit)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%s\t%s\t%.0f%%\t\t%s\n", r.peer, r.processed, r.wall.Round(time.Millisecond),
			r.wallRate(), r.spread, r.toFirst.Round(time.Millisecond), (1000 * r.cpuPerMsg()).Round(10*time.Microsecond), 100*r.othersShare(), note)
	}
	tw.Flush()
	if single != nil && batched != nil {
		fmt.Fprintf(w, "batched / single: msgs/s %s ; steady msgs/s %s   (CPU per message: %s)\n",
			ratio(batched.wallRate(), single.wallRate()), ratio(batched.steadyRate(), single.steadyRate()),
			ratio(float64(batched.cpuPerMsg()), float64(single.cpuPerMsg())))
	}
}

// reportLatency prints one row per round of the latency scenario.
func reportLatency(w io.Writer, o options, results []result) {
	var rows []result
	for _, r := range results {
		if r.family.name == "latency" && r.lat != nil {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n== latency: publish to handler start at %d msgs/s (%d every %s) for %s after a %s warm-up, %d-byte messages, %d partitions, %d keys, Go no-op handler (ordering key, concurrency %d)\n",
		latencyRate, int(latencyRate*latencyTick.Seconds()), latencyTick, o.latencyDur, latencyWarmup, o.size, o.partitions, o.keys, latencyConcurrency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tpublished\tmsgs/s\thandled\tp50\tp99\tp99.9\tmax\tCPU\tothers' CPU\t\tnote")
	for _, r := range rows {
		s := r.lat
		note := ""
		if r.err != nil {
			note = "error: " + r.err.Error()
		}
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%d\t%s\t%s\t%s\t%s\t%.1f%%\t%.0f%%\t\t%s\n", r.round, s.published, s.rate(), r.processed,
			fmtLatency(s.p50), fmtLatency(s.p99), fmtLatency(s.p999), fmtLatency(s.max), 100*r.cpuShare(), 100*r.othersShare(), note)
	}
	tw.Flush()
	fmt.Fprintln(w, "CPU is this process's CPU time over the window, in percent of one CPU (the broker and the producer included).")
}

func handlerName(f family) string {
	if f.delay > 0 {
		return "sleep " + f.delay.String()
	}
	return "no-op"
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// median returns the round with the median wall rate.
func median(rs []result) result {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b result) int {
		switch {
		case a.wallRate() < b.wallRate():
			return -1
		case a.wallRate() > b.wallRate():
			return 1
		}
		return 0
	})
	return rs[(len(rs)-1)/2]
}
