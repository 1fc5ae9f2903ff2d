package cli_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/cli"
)

// The handlers.* keys (where HTTP handlers may send requests) take their
// defaults, and are set by the file, the environment and flags alike; a
// bad entry is refused with its path.
func TestHandlersNetworkKeys(t *testing.T) {
	m := printed(t, runEnv(nil, "config", "print"))
	if got := fmt.Sprint(get(m, "handlers.deniedNetworks")); !strings.Contains(got, "169.254.0.0/16") || !strings.Contains(got, "fe80::/10") {
		t.Fatalf("default handlers.deniedNetworks = %s", got)
	}
	if got := fmt.Sprint(get(m, "handlers.deniedHosts")); got != "[metadata.google.internal]" {
		t.Fatalf("default handlers.deniedHosts = %s", got)
	}
	file := writeConfig(t, "sluice.yaml", "handlers:\n  allowedNetworks: [10.0.0.0/8, 127.0.0.1]\n")
	m = printed(t, runEnv(map[string]string{"SLUICE_CONFIG": file, "SLUICE_HANDLERS_DENIED_NETWORKS": "none"},
		"config", "print", "--handlers-allowed-hosts", "hooks.example,*.svc.example"))
	for path, want := range map[string]string{
		"handlers.allowedNetworks": "[10.0.0.0/8 127.0.0.1]",
		"handlers.allowedHosts":    "[hooks.example *.svc.example]",
		"handlers.deniedNetworks":  "[none]",
	} {
		if got := fmt.Sprint(get(m, path)); got != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
	for _, c := range []struct{ file, want string }{
		{"handlers:\n  deniedNetworks: [169.254.0.0/33]\n", `handlers.deniedNetworks[0]: "169.254.0.0/33" is not a network`},
		{"handlers:\n  allowedHosts: [\"http://x/\"]\n", `handlers.allowedHosts[0]: "http://x/" is not a host name`},
	} {
		r := runEnv(nil, "serve", "--config", writeConfig(t, "bad.yaml", c.file), "--http-addr", "127.0.0.1:0")
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, c.want)
		}
	}
}
