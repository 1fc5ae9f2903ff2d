package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/internal/cli"
	"github.com/sluicehq/sluice/internal/node"
)

// runEnv runs the CLI in-process with vars as its whole environment.
func runEnv(vars map[string]string, args ...string) result {
	var out, errOut strings.Builder
	env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return vars[k] }}
	code := cli.Run(context.Background(), args, env)
	return result{code, out.String(), errOut.String()}
}

func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// printed reads config print's YAML back.
func printed(t *testing.T, r result) map[string]any {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("config print: exit %d, %s", r.code, r.stderr)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("config print wrote no YAML: %v\n%s", err, r.stdout)
	}
	return m
}

func get(m map[string]any, path string) any {
	var v any = m
	for _, p := range strings.Split(path, ".") {
		v = v.(map[string]any)[p]
	}
	return v
}

// One value set in the file, the environment and a flag: the flag wins;
// without the flag, the environment; without both, the file.
func TestConfigPrecedenceFlagsOverEnvOverFileOverDefaults(t *testing.T) {
	file := writeConfig(t, "sluice.yaml", "httpAddr: 127.0.0.1:1001\ndrainTimeout: 7s\nembedded:\n  syncWrites: true\nfetch:\n  maxWait: 100ms\n")
	env := map[string]string{"SLUICE_CONFIG": file, "SLUICE_HTTP_ADDR": "127.0.0.1:1002", "SLUICE_FETCH_MAX_WAIT": "50ms"}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"flag", env, []string{"--http-addr", "127.0.0.1:1003"}, "127.0.0.1:1003"},
		{"env", env, nil, "127.0.0.1:1002"},
		{"file", map[string]string{"SLUICE_CONFIG": file}, nil, "127.0.0.1:1001"},
		{"default", nil, nil, "127.0.0.1:8080"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := printed(t, runEnv(c.env, append([]string{"config", "print"}, c.args...)...))
			if got := get(m, "httpAddr"); got != c.want {
				t.Errorf("httpAddr = %v, want %s", got, c.want)
			}
			if c.env != nil {
				// Keys the other layers leave alone keep the file's values.
				if get(m, "drainTimeout") != "7s" || get(m, "embedded.syncWrites") != true {
					t.Errorf("file keys lost: drainTimeout %v, embedded.syncWrites %v", get(m, "drainTimeout"), get(m, "embedded.syncWrites"))
				}
			}
		})
	}
	// --config names the file too, over SLUICE_CONFIG.
	other := writeConfig(t, "other.yaml", "httpAddr: 127.0.0.1:1004\n")
	if got := get(printed(t, runEnv(map[string]string{"SLUICE_CONFIG": file}, "config", "print", "--config", other)), "httpAddr"); got != "127.0.0.1:1004" {
		t.Errorf("--config: httpAddr = %v", got)
	}
	if got := get(printed(t, runEnv(env, "config", "print")), "fetch.maxWait"); got != "50ms" {
		t.Errorf("fetch.maxWait = %v, want the environment's 50ms", got)
	}
}

// Unknown keys and bad values are refused with the key path, and nothing
// starts.
func TestConfigRefusesUnknownKeysAndBadValues(t *testing.T) {
	for _, c := range []struct{ name, file, want string }{
		{"unknown top-level key", "htpAddr: x:1\n", "htpAddr: unknown key (line 1)"},
		{"unknown nested key", "kafka:\n  sasl:\n    mechanizm: PLAIN\n", "kafka.sasl.mechanizm: unknown key (line 3)"},
		{"bad mechanism", "brokers: [k:9092]\nkafka:\n  sasl: {mechanism: SCRAM, username: u, password: p}\n", "kafka.sasl.mechanism: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got \"SCRAM\""},
		{"bad duration", "drainTimeout: soon\n", "drainTimeout: want a duration such as 500ms or 30s, got \"soon\" (line 1)"},
		{"wrong shape", "api: [1, 2]\n", "api: want a mapping of keys (line 1)"},
		{"bad role", "api:\n  tokens:\n    - {name: a, role: root, token: 0123456789abcdef0}\n", "api.tokens[0].role: want viewer, publisher or admin, got \"root\""},
		{"twice", "partitions: 3\npartitions: 4\n", "partitions: set twice (line 2)"},
		{"zero written", "partitions: 0\n", "partitions: must be between 1 and 10000, got 0"},
		{"public kafka addr", "kafkaAddr: 0.0.0.0:9092\n", "kafkaAddr: 0.0.0.0:9092 is not a loopback address, so the embedded broker must require SASL and TLS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, "sluice.yaml", c.file)
			r := runEnv(nil, "serve", "--config", path, "--http-addr", "127.0.0.1:0")
			if r.code != cli.ExitUsage || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, c.want)
			}
		})
	}
	r := runEnv(map[string]string{"SLUICE_PARTITIONS": "many"}, "config", "print")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "partitions: want a whole number, got \"many\" (from SLUICE_PARTITIONS)") {
		t.Fatalf("a bad variable: exit %d, %q", r.code, r.stderr)
	}
}

// config print shows every secret as (set), wherever it came from.
func TestConfigPrintHidesSecrets(t *testing.T) {
	file := writeConfig(t, "sluice.yaml", `brokers: [k1:9093]
api:
  tokens:
    - {name: ops, role: admin, token: tok-admin-secret-0123456789}
    - {name: ci, role: publisher, tokenSHA256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8}
kafka:
  sasl: {mechanism: SCRAM-SHA-512, username: sluice, password: file-password-secret}
`)
	r := runEnv(map[string]string{"SLUICE_EMBEDDED_SASL_PASSWORD": "env-password-secret"}, "config", "print", "--config", file,
		"--embedded-sasl-mechanism", "SCRAM-SHA-256", "--embedded-sasl-username", "u")
	for _, secret := range []string{"tok-admin-secret", "file-password-secret", "env-password-secret"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("config print shows a secret:\n%s", r.stdout)
		}
	}
	m := printed(t, r)
	if get(m, "kafka.sasl.password") != "(set)" || get(m, "embedded.sasl.password") != "(set)" || get(m, "kafka.sasl.username") != "sluice" {
		t.Errorf("secrets not shown as (set):\n%s", r.stdout)
	}
	toks := get(m, "api.tokens").([]any)
	if toks[0].(map[string]any)["token"] != "(set)" || toks[1].(map[string]any)["tokenSHA256"] == "(set)" {
		t.Errorf("tokens: %v", toks)
	}
}

// Every key has a flag and a variable, except the token list (file only,
// or api.tokensFile); every serve flag sets a key.
func TestEveryKeyHasAFlagAndAVariable(t *testing.T) {
	root := cli.NewRootCmd(cli.Env{Getenv: func(string) string { return "" }})
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range node.Keys() {
		if k.Path == "api.tokens" {
			continue
		}
		if k.Flag == "" || serve.Flags().Lookup(k.Flag) == nil || !strings.HasPrefix(k.Env, "SLUICE_") {
			t.Errorf("%s: flag %q, variable %q", k.Path, k.Flag, k.Env)
		}
	}
	for _, want := range []struct{ path, flag, env string }{
		{"httpAddr", "http-addr", "SLUICE_HTTP_ADDR"},
		{"kafka.sasl.mechanism", "kafka-sasl-mechanism", "SLUICE_KAFKA_SASL_MECHANISM"},
		{"kafka.tls.caFile", "kafka-tls-ca-file", "SLUICE_KAFKA_TLS_CA_FILE"},
		{"embedded.syncWrites", "embedded-sync-writes", "SLUICE_EMBEDDED_SYNC_WRITES"},
		{"brokers", "brokers", "SLUICE_BROKERS"},
	} {
		k, ok := node.KeyByFlag(want.flag)
		if !ok || k.Path != want.path || k.Env != want.env {
			t.Errorf("flag %s: key %+v", want.flag, k)
		}
	}
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" {
			return
		}
		if _, ok := node.KeyByFlag(f.Name); !ok {
			t.Errorf("--%s sets no config key", f.Name)
		}
	})
}
