package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/handlers"
)

// Widths of the list columns that hold free text, in characters.
const (
	dlqErrorWidth = 60
	dlqKeyWidth   = 40
)

func newDLQCmd(env Env, conn *apiConn) *cobra.Command {
	cmd := newGroupCmd("dlq", "List, show, replay and purge a handler's dead letters", "deadletters")
	cmd.Long = `List, show, replay and purge a handler's dead letters: the messages it
could not handle, kept with why and where from.

Replaying delivers entries again to that handler alone and marks them
replayed; purging marks them discarded. Neither deletes the records, so a
purged entry can still be shown and replayed by its ID.

One failed message is one entry, however many records its dead-lettering
left (a retried write, a crash before the commit): the further records are
listed as the entry's duplicates and share its state.

Replaying or purging --all (or more than 500 IDs) runs as a job in the
node: the command follows it and prints its progress; the job goes on if
the command is interrupted ("sluice dlq jobs NAME" shows it, from any node).

--topic names another dead-letter topic of the handler: one it used before
its deadLetter.topic changed, or before it was deleted ("sluice dlq topics
NAME" lists them). The entries of a deleted handler can be listed, shown
and purged so, and replayed into a handler re-created with the name.`
	cmd.AddCommand(
		newDLQListCmd(env, conn),
		newDLQShowCmd(env, conn),
		newDLQActionCmd(env, conn, "replay"),
		newDLQActionCmd(env, conn, "purge"),
		newDLQJobsCmd(env, conn),
		newDLQTopicsCmd(env, conn),
	)
	return cmd
}

func newDLQListCmd(env Env, conn *apiConn) *cobra.Command {
	var (
		errText, since, until, state, topic string
		limit, offset                       int
	)
	cmd := &cobra.Command{
		Use:     "list NAME",
		Aliases: []string{"ls"},
		Short:   "List a handler's dead-letter entries, newest first",
		Example: `  sluice dlq list orders-audit
  sluice dlq list orders-audit --state dead --since 1h --error timeout
  sluice dlq list orders-audit --limit 20 --offset 20 -o json`,
		Args: exactArgs("NAME"),
	}
	out := addOutputFlag(cmd)
	fl := cmd.Flags()
	fl.StringVar(&errText, "error", "", "keep entries whose error contains `text` (case-insensitive)")
	fl.StringVar(&since, "since", "", "keep entries that last failed at or after `time`: RFC 3339, or a duration ago such as 1h")
	fl.StringVar(&until, "until", "", "keep entries that last failed at or before `time`: RFC 3339, or a duration ago such as 30m")
	fl.StringVar(&state, "state", "", "keep entries in `state` dead, replayed or discarded")
	fl.IntVar(&limit, "limit", 0, "show at most `n` entries, 1 to 1000 (the server's default is 50)")
	fl.IntVar(&offset, "offset", 0, "skip the first `n` matching entries, to page")
	fl.StringVar(&topic, "topic", "", topicHelp)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name := args[0]
		if err := handlers.ValidateName(name); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		f := api.DeadLetterFilter{ErrorContains: errText, State: state, Limit: limit, Offset: offset}
		now := time.Now()
		var err error
		if f.Since, err = parseSince(since, now); err != nil {
			return usageErr(c, "--since: %v", err)
		}
		if f.Until, err = parseSince(until, now); err != nil {
			return usageErr(c, "--until: %v", err)
		}
		if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
			return usageErr(c, "--until %s is before --since %s", f.Until.UTC().Format(time.RFC3339), f.Since.UTC().Format(time.RFC3339))
		}
		switch state {
		case "", api.StateDead, api.StateReplayed, api.StateDiscarded:
		default:
			return usageErr(c, "--state must be dead, replayed or discarded, got %q", state)
		}
		if c.Flags().Changed("limit") && (limit < 1 || limit > 1000) {
			return usageErr(c, "--limit must be from 1 to 1000, got %d", limit)
		}
		if offset < 0 {
			return usageErr(c, "--offset must not be negative, got %d", offset)
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		page, err := cl.ListDeadLetters(c.Context(), name, f, client.InTopic(topic))
		if err != nil {
			return fail("listing dead letters of "+name, err)
		}
		if page.Entries == nil {
			page.Entries = []api.DeadLetter{}
		}
		if *out != outputTable {
			return writeData(env.Stdout, *out, page)
		}
		filtered := errText != "" || since != "" || until != "" || state != ""
		return writeDLQPage(env, name, page, offset, filtered)
	}
	return cmd
}

// parseSince reads a --since or --until value: an RFC 3339 time, or a
// positive duration meaning that long before now. "" is the zero time.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("must be an RFC 3339 time such as 2026-01-02T15:04:05Z or a duration ago such as 1h, got %q", v)
}

// writeDLQPage writes the table of one page, then how much of the listing
// it shows and how to get the next page.
func writeDLQPage(env Env, name string, page api.DeadLetterPage, offset int, filtered bool) error {
	if len(page.Entries) == 0 {
		switch {
		case page.Total > 0:
			fmt.Fprintf(env.Stderr, "no entries at offset %d; %d in all\n", offset, page.Total)
		case filtered:
			fmt.Fprintf(env.Stderr, "no dead-letter entries of %s match\n", name)
		default:
			fmt.Fprintf(env.Stderr, "no dead-letter entries of %s\n", name)
		}
		return nil
	}
	tw := newTable(env.Stdout)
	fmt.Fprintln(tw, "ID\tSTATE\tATTEMPTS\tSOURCE\tLAST FAILURE\tKEY\tERROR")
	for _, e := range page.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n",
			cell(e.ID, 0), cell(e.State, 0), e.Attempts, source(e), timestamp(e.LastFailure),
			cell(entryKey(e), dlqKeyWidth), cell(e.Error, dlqErrorWidth))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%d of %d %s\n", len(page.Entries), page.Total, plural(page.Total, "entry", "entries"))
	if page.DuplicateRecords > 0 {
		fmt.Fprintf(env.Stdout, "%d duplicate %s folded into their entries\n", page.DuplicateRecords, plural(page.DuplicateRecords, "record", "records"))
	}
	if page.Next > 0 {
		fmt.Fprintf(env.Stdout, "more: --offset %d\n", page.Next)
	}
	return nil
}

// source is where an entry was consumed from: topic/partition@offset.
func source(e api.DeadLetter) string {
	if e.SourceTopic == "" {
		return "-"
	}
	return fmt.Sprintf("%s/%d@%d", cell(e.SourceTopic, 0), e.SourcePartition, e.SourceOffset)
}

// entryKey is the KEY column: the key, a binary key in base64, or "-".
func entryKey(e api.DeadLetter) string {
	switch {
	case e.KeyBase64 != "":
		return "base64:" + e.KeyBase64
	case e.Key == "":
		return "-"
	}
	return e.Key
}

// timestamp is t in RFC 3339 and UTC, or "-" when it is unset.
func timestamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// cell makes s fit one table cell: runs of whitespace and control
// characters (an error quoting a response body has newlines; a tab would
// shift the columns) become one space, and past width characters (0: no
// limit) it is cut with "…".
func cell(s string, width int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if s == "" {
		return "-"
	}
	if width > 0 {
		if r := []rune(s); len(r) > width {
			return string(r[:width-1]) + "…"
		}
	}
	return s
}

func newDLQShowCmd(env Env, conn *apiConn) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "show NAME ID",
		Aliases: []string{"get"},
		Short:   "Show one dead-letter entry: why it failed, where from, its headers and payload",
		Example: `  sluice dlq show orders-audit 3-1042
  sluice dlq show orders-audit 3-1042 -o json | jq -r .value`,
		Args: exactArgs("NAME", "ID"),
	}
	out := addOutputFlag(cmd)
	var topic string
	cmd.Flags().StringVar(&topic, "topic", "", topicHelp)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name, id := args[0], args[1]
		if err := handlers.ValidateName(name); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		e, err := cl.GetDeadLetter(c.Context(), name, id, client.InTopic(topic))
		if err != nil {
			return fail("", err)
		}
		if *out != outputTable {
			return writeData(env.Stdout, *out, e)
		}
		return describeEntry(env.Stdout, e)
	}
	return cmd
}

// describeEntry writes the key/value view of one entry. Values that would
// break the layout (newlines, tabs, control characters) are shown Go-quoted,
// except the payload: a text payload is written as it is, after the table;
// a binary one is shown in base64.
func describeEntry(w io.Writer, e api.DeadLetter) error {
	tw := newTable(w)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("ID", e.ID)
	if e.DuplicateOf != "" {
		row("Duplicate of", e.DuplicateOf+" (a further record of that entry's message; it shares its state)")
	}
	if e.Topic != "" {
		row("Topic", e.Topic)
	}
	row("Handler", e.Handler)
	row("State", e.State)
	if len(e.Duplicates) > 0 {
		row("Duplicates", strings.Join(e.Duplicates, " "))
	}
	if e.ReplayOf != "" {
		row("Replay of", e.ReplayOf)
	}
	if !e.StateChangedAt.IsZero() {
		row("State changed", timestamp(e.StateChangedAt))
	}
	row("Attempts", e.Attempts)
	row("Source", source(e))
	switch {
	case e.KeyBase64 != "":
		row("Key (base64)", e.KeyBase64)
	case e.Key != "":
		row("Key", quoteIfNeeded(e.Key))
	default:
		row("Key", "-")
	}
	row("First failure", timestamp(e.FirstFailure))
	row("Last failure", timestamp(e.LastFailure))
	if e.Status != 0 {
		row("HTTP status", e.Status)
	}
	if e.Error == "" {
		row("Error", "-")
	} else {
		row("Error", quoteIfNeeded(e.Error))
	}
	if len(e.Headers) == 0 {
		row("Headers", "-")
	} else {
		keys := make([]string, 0, len(e.Headers))
		for k := range e.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			label := ""
			if i == 0 {
				label = "Headers:"
			}
			fmt.Fprintf(tw, "%s\t%s=%s\n", label, quoteIfNeeded(k), quoteIfNeeded(e.Headers[k]))
		}
	}
	switch {
	case e.ValueBase64 != "":
		row("valueBase64", e.ValueBase64)
	case e.Value == nil || *e.Value == "":
		row("Value", "-")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if e.ValueBase64 == "" && e.Value != nil && *e.Value != "" {
		v := *e.Value
		if !strings.HasSuffix(v, "\n") {
			v += "\n"
		}
		_, err := fmt.Fprintf(w, "Value:\n%s", v)
		return err
	}
	return nil
}

// quoteIfNeeded Go-quotes s if it holds a character that would break a
// key/value line, or if it is empty, so that "" is seen.
func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }) {
		return strconv.Quote(s)
	}
	return s
}

const topicHelp = "act on the handler's dead-letter `topic` (one it used before, or a deleted handler's; default: its current one)"

// newDLQActionCmd builds replay and purge, which differ in the request and
// the verb.
func newDLQActionCmd(env Env, conn *apiConn, verb string) *cobra.Command {
	var (
		all, detach bool
		topic       string
	)
	short := "Deliver dead-letter entries again to their handler alone, and mark them replayed"
	allHelp := "replay every entry in state dead (runs as a job in the node)"
	if verb == "purge" {
		short = "Mark dead-letter entries discarded"
		allHelp = "discard every entry in state dead (runs as a job in the node)"
	}
	cmd := &cobra.Command{
		Use:   verb + " NAME (ID... | --all)",
		Short: short,
		Example: fmt.Sprintf(`  sluice dlq %[1]s orders-audit 3-1042 0-17
  sluice dlq %[1]s orders-audit --all
  sluice dlq %[1]s orders-audit --all --detach
  sluice dlq %[1]s orders-audit --all --topic orders-audit.old-dlq`, verb),
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr(c, "missing NAME")
			}
			return nil
		},
	}
	out := addOutputFlag(cmd)
	cmd.Flags().BoolVar(&all, "all", false, allHelp)
	cmd.Flags().BoolVar(&detach, "detach", false, "start the job and print it without following it (--all or more than 500 IDs)")
	cmd.Flags().StringVar(&topic, "topic", "", topicHelp)
	var force bool
	if verb == "replay" {
		cmd.Flags().BoolVar(&force, "force", false, "replay entries named by ID even if they were already replayed or discarded")
	}
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name, ids := args[0], args[1:]
		if err := handlers.ValidateName(name); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		switch {
		case all && len(ids) > 0:
			return usageErr(c, "give entry IDs or --all, not both")
		case !all && len(ids) == 0:
			return usageErr(c, "name the entries to %s: their IDs, or --all", verb)
		}
		for _, id := range ids {
			if id == "" {
				return usageErr(c, "an entry ID is empty")
			}
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		sel := api.Selection{IDs: ids, All: all, Force: force}
		doing, done := "replaying dead letters of "+name, "replayed"
		if verb == "purge" {
			doing, done = "discarding dead letters of "+name, "discarded"
		}
		job, n, err := cl.StartDeadLetters(c.Context(), name, verb, sel, client.InTopic(topic))
		if err != nil {
			return fail(doing, err)
		}
		if job != nil {
			if detach {
				if *out != outputTable {
					return writeData(env.Stdout, *out, job)
				}
				fmt.Fprintf(env.Stdout, "started %s job %s of %s on node %s; follow it with: sluice dlq jobs %s %s --wait\n",
					job.Kind, job.ID, name, cell(job.Node, 0), name, job.ID)
				return nil
			}
			fmt.Fprintf(env.Stderr, "%s job %s of %s started on node %s\n", job.Kind, job.ID, name, cell(job.Node, 0))
			j, err := followJob(c, env, cl, name, job.ID)
			if err != nil {
				return fail(doing, err)
			}
			if j.State == api.JobFailed {
				return fail(doing, fmt.Errorf("job %s failed after %d of %d entries (those stay %s; the others are still dead): %s",
					j.ID, j.Done, j.Total, done, j.Error))
			}
			n = j.Done
		}
		if *out != outputTable {
			if verb == "replay" {
				return writeData(env.Stdout, *out, api.ReplayResponse{Replayed: n})
			}
			return writeData(env.Stdout, *out, api.PurgeResponse{Discarded: n})
		}
		fmt.Fprintf(env.Stdout, "%s %d %s of %s\n", done, n, plural(n, "entry", "entries"), name)
		return nil
	}
	return cmd
}

// followJob polls a job until it is over, writing its progress to stderr
// each time it moves.
func followJob(c *cobra.Command, env Env, cl *client.Client, name, id string) (api.DeadLetterJob, error) {
	last := -1
	return cl.WaitDeadLetterJob(c.Context(), name, id, client.WithProgress(func(j api.DeadLetterJob) {
		if j.Done != last && j.Total > 0 {
			last = j.Done
			fmt.Fprintf(env.Stderr, "%s: %d of %d %s\n", j.Kind, j.Done, j.Total, plural(j.Total, "entry", "entries"))
		}
	}))
}

func newDLQJobsCmd(env Env, conn *apiConn) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "jobs NAME [JOB]",
		Short: "List a handler's dead-letter replay and purge jobs, or show (and follow) one",
		Long: `List a handler's dead-letter replay and purge jobs, or show one.

Any node shows every job: each is kept in the dead-letter state topic and
refreshed by the node that runs it (the NODE column) after each batch and
every 10s. A running job that its node stopped refreshing for 60s (the
node crashed) shows as failed. A node that stops mid-job loses no entry
(what the job did not mark stays dead) but does not resume it: start it
again.`,
		Example: `  sluice dlq jobs orders-audit
  sluice dlq jobs orders-audit 9f1c2a7b40d3e118 --wait`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageErr(c, "give NAME and, optionally, a JOB id")
			}
			return nil
		},
	}
	out := addOutputFlag(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the job until it is over, printing its progress")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name := args[0]
		if err := handlers.ValidateName(name); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		var jobs []api.DeadLetterJob
		if len(args) == 2 {
			var j api.DeadLetterJob
			if wait {
				j, err = followJob(c, env, cl, name, args[1])
			} else {
				j, err = cl.GetDeadLetterJob(c.Context(), name, args[1])
			}
			if err != nil {
				return fail("", err)
			}
			if *out != outputTable {
				return writeData(env.Stdout, *out, j)
			}
			jobs = []api.DeadLetterJob{j}
		} else {
			if wait {
				return usageErr(c, "--wait needs a JOB id")
			}
			if jobs, err = cl.ListDeadLetterJobs(c.Context(), name); err != nil {
				return fail("listing dead-letter jobs of "+name, err)
			}
			if jobs == nil {
				jobs = []api.DeadLetterJob{}
			}
			if *out != outputTable {
				return writeData(env.Stdout, *out, jobs)
			}
			if len(jobs) == 0 {
				fmt.Fprintf(env.Stderr, "no dead-letter jobs of %s\n", name)
				return nil
			}
		}
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "JOB\tKIND\tSTATE\tDONE\tTOTAL\tTOPIC\tNODE\tSTARTED\tFINISHED\tERROR")
		for _, j := range jobs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", cell(j.ID, 0), cell(j.Kind, 0), cell(j.State, 0),
				j.Done, j.Total, cell(j.Topic, 0), cell(j.Node, 0), timestamp(j.StartedAt), timestamp(j.FinishedAt), cell(j.Error, dlqErrorWidth))
		}
		return tw.Flush()
	}
	return cmd
}

func newDLQTopicsCmd(env Env, conn *apiConn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topics NAME",
		Short: "List a handler's dead-letter topics: its current one and those it left",
		Example: `  sluice dlq topics orders-audit
  sluice dlq list orders-audit --topic orders-audit.dlq`,
		Args: exactArgs("NAME"),
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name := args[0]
		if err := handlers.ValidateName(name); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		ts, err := cl.DeadLetterTopics(c.Context(), name)
		if err != nil {
			return fail("listing dead-letter topics of "+name, err)
		}
		if *out != outputTable {
			return writeData(env.Stdout, *out, ts)
		}
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "TOPIC\tSTATE\tSINCE")
		if ts.Current != "" {
			fmt.Fprintf(tw, "%s\tcurrent\t-\n", cell(ts.Current, 0))
		}
		for _, r := range ts.Retired {
			if r.Topic != ts.Current {
				fmt.Fprintf(tw, "%s\tretired\t%s\n", cell(r.Topic, 0), timestamp(r.RetiredAt))
			}
		}
		return tw.Flush()
	}
	return cmd
}

// plural picks the form of a noun for n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
