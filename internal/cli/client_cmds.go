package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/client"
)

// DefaultServer is the API the client commands call when neither --server
// nor SLUICE_SERVER says otherwise: a `sluice serve` on this machine.
const DefaultServer = "http://127.0.0.1:8080"

// addClientCommands adds the commands that talk to a running node's API.
func addClientCommands(root *cobra.Command, env Env) {
	conn := &apiConn{}
	def := DefaultServer
	if env.Getenv != nil {
		if s := env.Getenv("SLUICE_SERVER"); s != "" {
			def = s
		}
	}
	root.PersistentFlags().StringVar(&conn.server, "server", def, "URL of the Sluice API to call (env SLUICE_SERVER)")
	root.PersistentFlags().StringVar(&conn.token, "token", "", "bearer token for the API (env SLUICE_TOKEN; the flag shows in ps, the variable does not)")
	root.PersistentFlags().StringVar(&conn.cacert, "cacert", "", "PEM file of the CA that signs the API's certificate, for an https --server (env SLUICE_CACERT)")
	conn.getenv = env.Getenv

	root.AddCommand(
		newHandlerCmd(env, conn),
		newPublishCmd(env, conn),
		newTopicsCmd(env, conn),
		newDLQCmd(env, conn),
		newStatusCmd(env, conn),
	)
}

// apiConn is how a command reaches the API: the --server flag, read when
// the command runs.
type apiConn struct {
	server, token, cacert string
	getenv                func(string) string
}

// client returns a client for --server with --token and --cacert (or
// their variables); a bad URL or CA file is a usage error.
func (a *apiConn) client() (*client.Client, error) {
	token, cacert := a.token, a.cacert
	if a.getenv != nil {
		if token == "" {
			token = a.getenv("SLUICE_TOKEN")
		}
		if cacert == "" {
			cacert = a.getenv("SLUICE_CACERT")
		}
	}
	opts := []client.Option{client.WithToken(strings.TrimSpace(token))}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("--cacert: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("--cacert: %s holds no PEM certificate", cacert)}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		opts = append(opts, client.WithHTTPClient(&http.Client{Timeout: client.DefaultTimeout, Transport: tr}))
	}
	c, err := client.New(a.server, opts...)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("--server: %w", err)}
	}
	return c, nil
}

// fail gives an error from the client the exit code scripts rely on: 3 for
// a 404, 2 for any other 4xx (the input was refused), 1 otherwise. doing,
// when not empty, says what was being done ("applying handler/orders").
func fail(doing string, err error) error {
	if doing != "" {
		err = fmt.Errorf("%s: %w", doing, err)
	}
	var ue *client.UnreachableError
	var ae *client.APIError
	switch {
	case errors.As(err, &ue):
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%w (is `sluice serve` running? set --server or SLUICE_SERVER)", err)}
	case errors.As(err, &ae) && ae.StatusCode == 404:
		return &ExitError{Code: ExitNotFound, Err: err}
	case errors.As(err, &ae) && ae.StatusCode/100 == 4:
		return &ExitError{Code: ExitUsage, Err: err}
	}
	return &ExitError{Code: ExitFailure, Err: err}
}

// usageErr is an ExitUsage error that points at the command's help.
func usageErr(c *cobra.Command, format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: %s (see '%s --help')", c.CommandPath(), fmt.Sprintf(format, a...), c.CommandPath())}
}

// exactArgs accepts exactly the named positional arguments and says which
// is missing or extra; cobra's own validators return errors Run cannot
// tell from a failure.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErr(c, "missing %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return usageErr(c, "unexpected argument %q", args[len(names)])
		}
		return nil
	}
}

// newGroupCmd is a command that only holds subcommands. Alone it prints its
// help; with an unknown subcommand it is a usage error, not cobra's default
// of printing help and succeeding.
func newGroupCmd(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Aliases: aliases,
		Args:    cobra.ArbitraryArgs,
		// As cobra's root uses for its own suggestions.
		SuggestionsMinimumDistance: 2,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			msg := fmt.Sprintf("unknown command %q", args[0])
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			}
			return usageErr(c, "%s", msg)
		},
	}
}
