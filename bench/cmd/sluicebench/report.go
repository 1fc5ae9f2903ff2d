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
// peer, on the wall rate and on the steady rate.
func report(w io.Writer, o options, results []result) {
	for _, fam := range o.scenarios {
		var rows []result
		for _, p := range o.peers {
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
