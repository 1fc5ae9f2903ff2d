package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
)

func newTopicsCmd(env Env, conn *apiConn) *cobra.Command {
	cmd := newGroupCmd("topics", "List and create topics", "topic")
	cmd.AddCommand(newTopicsListCmd(env, conn), newTopicsCreateCmd(env, conn))
	return cmd
}

func newTopicsListCmd(env Env, conn *apiConn) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List topics with their partitions and message counts",
		Args:    exactArgs(),
	}
	out := addOutputFlag(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "include internal topics (names starting with __)")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		cl, err := conn.client()
		if err != nil {
			return err
		}
		ts, err := cl.ListTopics(c.Context())
		if err != nil {
			return fail("listing topics", err)
		}
		shown := []api.TopicInfo{}
		for _, t := range ts {
			if all || !(t.Internal || strings.HasPrefix(t.Name, "__")) {
				shown = append(shown, t)
			}
		}
		sort.Slice(shown, func(i, j int) bool { return shown[i].Name < shown[j].Name })
		if *out != outputTable {
			return writeData(env.Stdout, *out, api.TopicList{Topics: shown})
		}
		if len(shown) == 0 {
			fmt.Fprintln(env.Stderr, "no topics")
			return nil
		}
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "NAME\tPARTITIONS\tMESSAGES")
		for _, t := range shown {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", t.Name, t.Partitions, t.Messages)
		}
		return tw.Flush()
	}
	return cmd
}

func newTopicsCreateCmd(env Env, conn *apiConn) *cobra.Command {
	var partitions int
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic",
		Args:  exactArgs("NAME"),
	}
	cmd.Flags().IntVar(&partitions, "partitions", 0, "number of partitions, `n`; 0 takes the server's default")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		name := args[0]
		if err := handlers.ValidateTopic("name", name); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		if partitions < 0 {
			return usageErr(c, "--partitions must not be negative, got %d", partitions)
		}
		cl, err := conn.client()
		if err != nil {
			return err
		}
		if err := cl.CreateTopic(c.Context(), name, partitions); err != nil {
			return fail("creating topic/"+name, err)
		}
		fmt.Fprintf(env.Stdout, "topic/%s created\n", name)
		return nil
	}
	return cmd
}
