package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/api"
)

// clearScreen moves the cursor home and erases the screen, so each --watch
// frame replaces the last on a terminal.
const clearScreen = "\x1b[H\x1b[2J"

// frameSeparator goes between --watch frames when stdout is not a terminal
// (a file, a pipe): the table and YAML streams then read as a sequence of
// documents.
const frameSeparator = "---\n"

func newStatusCmd(env Env, conn *apiConn) *cobra.Command {
	var (
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every handler at a glance: state, rates, latency, lag",
		Long: `Show every handler at a glance, as the node at --server sees it: its state,
messages in, out and failed per second, invocation latency, lag, the age of
the oldest unprocessed message, in-flight messages against the concurrency
limit, and dead letters. Rates and latencies cover the node's last sample
interval; "-" in a rate, latency or age column means none, or not measured
yet.

With --watch the view is redrawn every --interval until interrupted. The
first request must succeed; later failures are reported on stderr and the
watch goes on, so a restarting node does not end it. With -o json, --watch
writes one JSON object per line.`,
		Example: `  sluice status
  sluice status --watch --interval 5s
  sluice status -o json --watch | jq -c '.handlers[] | {name, lag}'`,
		Args: exactArgs(),
	}
	out := addOutputFlag(cmd)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw every --interval until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between frames with --watch")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if interval <= 0 {
			return usageErr(c, "--interval must be positive, got %s", interval)
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		ctx := c.Context()
		if !watch {
			ov, err := cl.Overview(ctx)
			if err != nil {
				return fail("getting the overview", err)
			}
			sortOverview(&ov)
			if *out != outputTable {
				return writeData(env.Stdout, *out, ov)
			}
			return writeStatus(env.Stdout, ov)
		}

		tty := writesToTerminal(env.Stdout)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for frame := 0; ; frame++ {
			ov, err := cl.Overview(ctx)
			switch {
			case ctx.Err() != nil:
				return nil // interrupted: the normal end of a watch
			case err != nil && frame == 0:
				return fail("getting the overview", err)
			case err != nil:
				fmt.Fprintf(env.Stderr, "%s error: getting the overview: %v\n", time.Now().Format(time.TimeOnly), err)
			default:
				// One write per frame, so a terminal never shows half of one.
				var buf bytes.Buffer
				if err := writeFrame(&buf, *out, ov, frame, tty); err != nil {
					return err
				}
				if _, err := env.Stdout.Write(buf.Bytes()); err != nil {
					return fmt.Errorf("writing the status: %w", err)
				}
			}
			// Checked apart from the select, which picks at random when the
			// tick is due too: an interrupt ends the watch before another
			// request.
			if ctx.Err() != nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	}
	return cmd
}

// writeFrame writes one --watch frame: JSON as one line, YAML and tables
// after a clear screen on a terminal or a separator between frames
// elsewhere.
func writeFrame(w io.Writer, format outputFormat, ov api.Overview, frame int, tty bool) error {
	sortOverview(&ov)
	if format == outputJSON {
		b, err := json.Marshal(ov)
		if err != nil {
			return fmt.Errorf("encoding the output: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	switch {
	case tty:
		io.WriteString(w, clearScreen)
	case frame > 0:
		io.WriteString(w, frameSeparator)
	}
	if format == outputYAML {
		return writeData(w, format, ov)
	}
	return writeStatus(w, ov)
}

// writesToTerminal reports whether w is a character device: the same
// portable test as isTerminal (publish.go), without golang.org/x/term.
// /dev/null passes too, which only costs escape codes nobody sees. Any
// writer with a Stat method (an *os.File, or a test's stand-in) is asked.
func writesToTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// sortOverview orders the handlers by name, as every listing does.
func sortOverview(ov *api.Overview) {
	if ov.Handlers == nil {
		ov.Handlers = []api.HandlerOverview{}
	}
	slices.SortFunc(ov.Handlers, func(a, b api.HandlerOverview) int { return strings.Compare(a.Name, b.Name) })
}

// writeStatus writes the node line and the handler table.
func writeStatus(w io.Writer, ov api.Overview) error {
	if _, err := fmt.Fprintln(w, nodeLine(ov.Node)); err != nil {
		return err
	}
	if len(ov.Handlers) == 0 {
		_, err := fmt.Fprintln(w, "no handlers registered")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "HANDLER\tSTATE\tIN/S\tOUT/S\tERR/S\tP50\tP99\tLAG\tOLDEST\tLIMIT\tINFLIGHT\tDLQ")
	for _, h := range ov.Handlers {
		limit := "-"
		if h.ConcurrencyLimit > 0 {
			limit = fmt.Sprint(h.ConcurrencyLimit)
		}
		// Counts are shown as they are: a lag, in-flight or dead-letter
		// count of 0 is news, not a missing measurement.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n",
			nameWithSource(h.Name, h.Source), handlerState(h), rate(h.RateIn), rate(h.RateOut), rate(h.ErrorRate),
			latency(h.P50Ms), latency(h.P99Ms), lagCell(h), age(h.OldestAgeSeconds), limit, h.InFlight, h.DeadLettered)
	}
	return tw.Flush()
}

// nodeLine says which node answered and what Kafka it uses:
// "node node-a, embedded broker at 127.0.0.1:9092, version dev, up since
// 2026-03-01T12:00:00Z".
func nodeLine(n api.NodeInfo) string {
	id := n.ID
	if id == "" {
		id = "(unnamed)"
	}
	brokers := strings.Join(n.Brokers, ",")
	if brokers == "" {
		brokers = "-"
	}
	parts := []string{"node " + id}
	if n.Embedded {
		parts = append(parts, "embedded broker at "+brokers)
	} else {
		parts = append(parts, "Kafka at "+brokers)
	}
	if n.Version != "" {
		parts = append(parts, "version "+n.Version)
	}
	if !n.StartedAt.IsZero() {
		parts = append(parts, "up since "+n.StartedAt.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, ", ")
}

// handlerState is the STATE column. A breaker that is not closed is worth
// a glance even while the handler runs, so it is added unless the state
// says it already.
func handlerState(h api.HandlerOverview) string {
	s := withSince(h.State, h.StateSince)
	if s == "" {
		s = "-"
	}
	switch b := h.BreakerState; {
	case b == "", b == "closed", b == "disabled", strings.Contains(s, "breaker"), h.Paused:
		return s
	default:
		return s + " (breaker " + b + ")"
	}
}

// rate shows a per-second rate with one decimal, or "-" for none.
func rate(r float64) string {
	if r <= 0 || math.IsNaN(r) {
		return "-"
	}
	return fmt.Sprintf("%.1f", r)
}

// latency shows milliseconds with about two significant figures: "0.45ms",
// "3.2ms", "48ms", "1.25s", "12.5s", then as an age; "-" for none.
func latency(ms float64) string {
	switch {
	case ms <= 0 || math.IsNaN(ms):
		return "-"
	// Each bound is where the shorter form would round up into the next.
	case ms < 0.995:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 9.95:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 999.5:
		return fmt.Sprintf("%.0fms", ms)
	case ms < 9995:
		return fmt.Sprintf("%.2fs", ms/1000)
	case ms < 59_950:
		return fmt.Sprintf("%.1fs", ms/1000)
	}
	return age(ms / 1000)
}

// age shows a duration in seconds the way people read one: "4.2s", "42s",
// "1m05s", "2h03m", "3d04h"; "-" for none.
func age(s float64) string {
	switch {
	case s <= 0 || math.IsNaN(s):
		return "-"
	case s < 9.95:
		return fmt.Sprintf("%.1fs", s)
	case s < 60:
		return fmt.Sprintf("%.0fs", math.Floor(s))
	}
	sec := int64(s)
	switch m := sec / 60; {
	case m < 60:
		return fmt.Sprintf("%dm%02ds", m, sec%60)
	case m < 48*60:
		return fmt.Sprintf("%dh%02dm", m/60, m%60)
	default:
		return fmt.Sprintf("%dd%02dh", m/(24*60), m/60%24)
	}
}

// lagCell is the lag; for a queue handler whose queue says how many are
// delivered and unacknowledged, "120 (+8 unacked)"; "-" for a queue that
// does not answer.
func lagCell(h api.HandlerOverview) string {
	if h.Source == "" || h.Source == "kafka" {
		return fmt.Sprint(h.Lag)
	}
	if h.Lag < 0 {
		return "-"
	}
	if h.Unacked > 0 {
		return fmt.Sprintf("%d (+%d unacked)", h.Lag, h.Unacked)
	}
	return fmt.Sprint(h.Lag)
}

// nameWithSource is a handler's name, followed by its source when that is
// a queue rather than Kafka: "orders (redis)".
func nameWithSource(name, source string) string {
	if source == "" || source == "kafka" {
		return name
	}
	return name + " (" + source + ")"
}
