package cli

import "github.com/spf13/cobra"

// addClientCommands adds the commands that talk to a running node's API.
func addClientCommands(root *cobra.Command, env Env) {}
