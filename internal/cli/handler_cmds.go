package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
)

func newHandlerCmd(env Env, conn *apiConn) *cobra.Command {
	cmd := newGroupCmd("handler", "Register, inspect, pause and remove handlers", "handlers")
	cmd.AddCommand(
		newHandlerApplyCmd(env, conn),
		newHandlerListCmd(env, conn),
		newHandlerGetCmd(env, conn),
		newHandlerDeleteCmd(env, conn),
		newHandlerPauseCmd(env, conn, "pause", "paused"),
		newHandlerPauseCmd(env, conn, "resume", "resumed"),
	)
	return cmd
}

func newHandlerApplyCmd(env Env, conn *apiConn) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Register handlers from YAML or JSON specs, or update them",
		Long: `Register handlers from YAML or JSON specs, or update them.

A file may hold several YAML documents separated by "---". Every spec is
checked before any is sent, so a file with a mistake changes nothing.
Applying the same file again is harmless.`,
		Example: `  sluice handler apply -f orders.yaml
  cat *.yaml | sluice handler apply -f -
  sluice handler apply -f orders.yaml --if-version 57   # 409 if someone changed it since version 57`,
		Args: exactArgs(),
	}
	out := addOutputFlag(cmd)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "spec `file`; - reads stdin; repeat for several files")
	ifVersion := cmd.Flags().Int64("if-version", -1, "apply only over this `version` of the handler (from handler get); a newer one is a conflict (exit 2)")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if len(files) == 0 {
			return usageErr(c, "-f FILE is required")
		}
		if c.Flags().Changed("if-version") && *ifVersion < 0 {
			return usageErr(c, "--if-version must not be negative, got %d", *ifVersion)
		}
		var specs []handlers.Spec
		for _, f := range files {
			s, err := readSpecs(env, f)
			if err != nil {
				return err
			}
			specs = append(specs, s...)
		}
		if *ifVersion >= 0 && len(specs) != 1 {
			return usageErr(c, "--if-version needs exactly one spec, got %d", len(specs))
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		applied := api.HandlerList{Handlers: []api.Handler{}}
		for _, s := range specs {
			var h api.Handler
			var created bool
			if *ifVersion >= 0 {
				h, created, err = cl.ApplyHandlerIf(c.Context(), s, *ifVersion)
			} else {
				h, created, err = cl.ApplyHandler(c.Context(), s)
			}
			if err != nil {
				return fail("applying handler/"+s.Name, err)
			}
			applied.Handlers = append(applied.Handlers, h)
			if *out == outputTable {
				verb := "configured"
				if created {
					verb = "created"
				}
				fmt.Fprintf(env.Stdout, "handler/%s %s\n", s.Name, verb)
			}
		}
		if *out != outputTable {
			return writeData(env.Stdout, *out, applied)
		}
		return nil
	}
	return cmd
}

// readSpecs reads and checks the specs of one -f argument. Any problem is a
// usage error: nothing has been sent yet.
func readSpecs(env Env, file string) ([]handlers.Spec, error) {
	var (
		data []byte
		err  error
		name = file
	)
	if file == "-" {
		name = "stdin"
		if env.Stdin != nil {
			data, err = io.ReadAll(env.Stdin)
		}
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("reading handler specs: %w", err)}
	}
	specs, err := handlers.Parse(data)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: %w", name, err)}
	}
	return specs, nil
}

func newHandlerListCmd(env Env, conn *apiConn) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the registered handlers",
		Args:    exactArgs(),
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		cl, err := conn.client()
		if err != nil {
			return err
		}
		hs, err := cl.ListHandlers(c.Context())
		if err != nil {
			return fail("listing handlers", err)
		}
		if hs == nil {
			hs = []api.Handler{}
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
		if *out != outputTable {
			return writeData(env.Stdout, *out, api.HandlerList{Handlers: hs})
		}
		if len(hs) == 0 {
			fmt.Fprintln(env.Stderr, "no handlers registered")
			return nil
		}
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "NAME\tTOPIC\tINVOKER\tORDERING\tCONCURRENCY\tSTATE\tLAG")
		for _, h := range hs {
			lag := "-"
			if h.Status != nil {
				lag = fmt.Sprint(h.Status.Lag)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				h.Name, topicWithSource(h.Spec), invoker(h.Spec), h.Spec.Ordering, h.Spec.Concurrency, state(h), lag)
		}
		return tw.Flush()
	}
	return cmd
}

// invoker is the INVOKER column: the URL of an HTTP handler, or "go".
func invoker(s handlers.Spec) string {
	switch {
	case s.HTTP != nil:
		return s.HTTP.URL
	case s.Go != nil:
		return "go"
	}
	return "-"
}

// state is the STATE column: paused wins over what the node reports, since
// a handler can be paused before the node has caught up.
func state(h api.Handler) string {
	switch {
	case h.Paused:
		return "paused"
	case h.Status == nil || h.Status.State == "":
		return "-"
	}
	return withSince(h.Status.State, h.Status.StateSince)
}

// withSince adds how long a waiting state (starting, rejoining, stalled)
// has lasted: "rejoining (12s)".
func withSince(state string, since time.Time) string {
	switch state {
	case "starting", "rejoining", "stalled":
		if !since.IsZero() {
			return fmt.Sprintf("%s (%s)", state, time.Since(since).Round(time.Second))
		}
	}
	return state
}

func newHandlerGetCmd(env Env, conn *apiConn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one handler: its spec and how its consumption is going",
		Args:  exactArgs("NAME"),
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
		h, err := cl.GetHandler(c.Context(), name)
		if err != nil {
			return fail("", err)
		}
		if *out != outputTable {
			return writeData(env.Stdout, *out, h)
		}
		return describeHandler(env.Stdout, h)
	}
	return cmd
}

// describeHandler writes the key/value view of one handler.
func describeHandler(w io.Writer, h api.Handler) error {
	tw := newTable(w)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	s := h.Spec
	row("Name", h.Name)
	if s.Source.IsQueue() {
		row("Source", s.Source)
	}
	row("Topic", s.Topic)
	row("Group", s.Group())
	switch {
	case s.HTTP != nil:
		row("Invoker", "http")
		row("URL", s.HTTP.URL)
		if len(s.HTTP.Headers) > 0 {
			keys := make([]string, 0, len(s.HTTP.Headers))
			for k := range s.HTTP.Headers {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			pairs := make([]string, len(keys))
			for i, k := range keys {
				pairs[i] = k + "=" + s.HTTP.Headers[k]
			}
			row("Headers", strings.Join(pairs, ", "))
		}
	case s.Go != nil:
		row("Invoker", "go")
	}
	row("Ordering", s.Ordering)
	row("Concurrency", s.Concurrency.String())
	if g, ok := s.StartFrom.TakeoverGroup(); ok {
		row("Start from", "where group "+g+" committed")
	} else {
		row("Start from", s.StartFrom)
	}
	if s.Filter != nil {
		b, _ := json.Marshal(s.Filter)
		row("Filter", string(b))
	}
	if s.OnSuccess != nil {
		row("On success", s.OnSuccess.Topic)
	}
	if s.OnFailure != nil {
		row("On failure", s.OnFailure.Topic)
	}
	if t := s.InvocationTimeout(); t > 0 {
		row("Timeout", t)
	}
	if r := s.Retry; r != nil {
		row("Retry", fmt.Sprintf("%d attempts, backoff %s to %s x%g, %s jitter, %s", r.MaxAttempts, r.InitialBackoff.D(), r.MaxBackoff.D(), r.Multiplier, r.Jitter, r.Mode))
	}
	if s.RateLimit > 0 {
		row("Rate limit", fmt.Sprintf("%g/s", s.RateLimit))
	}
	if s.DeadLetter != nil {
		row("Dead letters", s.DeadLetter.Topic)
		if sc := s.Scaling; sc != nil {
			row("Scaling", fmt.Sprintf("oldest under %s, %d..%d nodes", sc.MaxAge.D(), sc.Min(), sc.MaxNodes))
		}
	}
	row("Paused", h.Paused)
	row("Version", h.Version)
	if !h.UpdatedAt.IsZero() {
		row("Updated", h.UpdatedAt.Format(time.RFC3339))
	}
	row("State", state(h))
	if st := h.Status; st != nil {
		if st.Breaker != nil {
			row("Breaker", breakerState(st.Breaker))
		}
		row("Lag", st.Lag)
		row("In flight", fmt.Sprintf("%d of %d", st.InFlight, st.Limit))
		row("Received", st.Received)
		row("Succeeded", st.Succeeded)
		row("Failed", st.Failed)
		row("Retried", st.Retried)
		row("Dead-lettered", st.DeadLettered)
		row("Commits", fmt.Sprintf("%d (%d failed)", st.Commits, st.CommitErrs))
		if st.LastError != "" {
			row("Last error", st.LastError)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if h.Status == nil || len(h.Status.Partitions) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	parts := slices.Clone(h.Status.Partitions)
	slices.SortFunc(parts, func(a, b api.PartitionStatus) int {
		if a.Topic != b.Topic {
			return strings.Compare(a.Topic, b.Topic)
		}
		return a.Partition - b.Partition
	})
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tFETCHED\tPENDING")
	for _, p := range parts {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\n", p.Topic, p.Partition, offset(p.Committed), offset(p.Fetched), p.Pending)
	}
	return tw.Flush()
}

// breakerState is the Breaker row: "open (since 2026-03-01T12:00:00Z,
// opened 3 times)", or "disabled". The time is left out until the breaker
// has changed state.
func breakerState(b *api.BreakerStatus) string {
	if b.State == "disabled" {
		return b.State
	}
	var since string
	if !b.ChangedAt.IsZero() {
		since = "since " + b.ChangedAt.UTC().Format(time.RFC3339) + ", "
	}
	return fmt.Sprintf("%s (%sopened %d %s)", b.State, since, b.Opened, plural(int(b.Opened), "time", "times"))
}

// offset shows an offset, or "-" for Kafka's negative "none yet" values.
func offset(o int64) string {
	if o < 0 {
		return "-"
	}
	return fmt.Sprint(o)
}

func newHandlerDeleteCmd(env Env, conn *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Unregister a handler",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			if err := handlers.ValidateName(name); err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			cl, err := conn.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteHandler(c.Context(), name); err != nil {
				return fail("", err)
			}
			fmt.Fprintf(env.Stdout, "handler/%s deleted\n", name)
			return nil
		},
	}
}

// newHandlerPauseCmd builds pause and resume, which differ only in the
// verb.
func newHandlerPauseCmd(env Env, conn *apiConn, verb, done string) *cobra.Command {
	short := "Stop a handler from taking new messages; in-flight ones finish"
	if verb == "resume" {
		short = "Let a paused handler take messages again"
	}
	cmd := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  exactArgs("NAME"),
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
		action := cl.PauseHandler
		if verb == "resume" {
			action = cl.ResumeHandler
		}
		h, err := action(c.Context(), name)
		if err != nil {
			return fail("", err)
		}
		if *out != outputTable {
			return writeData(env.Stdout, *out, h)
		}
		fmt.Fprintf(env.Stdout, "handler/%s %s\n", name, done)
		return nil
	}
	return cmd
}

// topicWithSource is a handler's topic, prefixed with its source when that
// is a queue rather than Kafka: "redis:orders".
func topicWithSource(s handlers.Spec) string {
	if s.Source.IsQueue() {
		return string(s.Source) + ":" + s.Topic
	}
	return s.Topic
}
