package cli

import "github.com/spf13/cobra"

func newServeCmd(env Env) *cobra.Command {
	return &cobra.Command{Use: "serve", Short: "Run a Sluice node"}
}
