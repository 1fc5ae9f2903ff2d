package cli_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/api"
)

// yamlToAPI reads YAML output back through its JSON form, the way the
// output was made.
func yamlToAPI(y string, v any) error {
	var m any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		return err
	}
	j, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(j, v)
}

func TestUnreachableServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	host := strings.TrimPrefix(url, "http://")

	for _, tc := range []struct {
		args  []string
		doing string
	}{
		{[]string{"handler", "list"}, "listing handlers: "},
		{[]string{"handler", "get", "orders"}, ""},
		{[]string{"topics", "list"}, "listing topics: "},
		{[]string{"publish", "orders", "--data", "x"}, "publishing to orders: "},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, url, "", tc.args...)
			want := "error: " + tc.doing + "cannot reach the Sluice API at " + url +
				": dial tcp " + host + ": connect: connection refused" +
				" (is `sluice serve` running? set --server or SLUICE_SERVER)\n"
			if r.code != 1 || r.stderr != want || r.stdout != "" {
				t.Errorf("got code %d, stdout %q, stderr:\n%s\nwant code 1, stderr:\n%s", r.code, r.stdout, r.stderr, want)
			}
		})
	}
}

func TestServerFlagOverridesEnv(t *testing.T) {
	f := newFakeAPI(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	down := srv.URL
	srv.Close()

	r := run(t, down, "", "--server", f.URL, "topics", "list")
	if r.code != 0 || r.stderr != "no topics\n" {
		t.Errorf("--server before the command: %+v", r)
	}
	r = run(t, down, "", "topics", "list", "--server", f.URL+"/")
	if r.code != 0 || r.stderr != "no topics\n" {
		t.Errorf("--server after the command: %+v", r)
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("%d requests reached --server, want 2", n)
	}
}

func TestDefaultServer(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"", `(default "http://127.0.0.1:8080")`},
		{"http://sluice:9000", `(default "http://sluice:9000")`},
	} {
		r := run(t, tc.env, "", "handler", "list", "--help")
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("SLUICE_SERVER=%q: help does not show %s:\n%s", tc.env, tc.want, r.stdout)
		}
	}
}

func TestServerErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"server failure", 500, `{"error":"registry: disk full"}`, "error: listing handlers: registry: disk full\n"},
		{"proxy page", 502, "<html>Bad Gateway</html>", "error: listing handlers: 502 Bad Gateway: <html>Bad Gateway</html>\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			r := run(t, srv.URL, "", "handler", "list")
			if r.code != 1 || r.stderr != tc.wantErr {
				t.Errorf("got code %d, stderr %q; want 1, %q", r.code, r.stderr, tc.wantErr)
			}
		})
	}

	t.Run("not the Sluice API", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html>welcome</html>")
		}))
		defer srv.Close()
		r := run(t, srv.URL, "", "topics", "list")
		if r.code != 1 || !strings.Contains(r.stderr, "is not Sluice API JSON (is that the right address?)") {
			t.Errorf("got %+v", r)
		}
	})
}

func TestUsageErrors(t *testing.T) {
	f := newFakeAPI(t)
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"missing NAME", []string{"handler", "get"},
			"error: sluice handler get: missing NAME (see 'sluice handler get --help')"},
		{"extra argument", []string{"handler", "delete", "a", "b"},
			`error: sluice handler delete: unexpected argument "b" (see 'sluice handler delete --help')`},
		{"argument to list", []string{"topics", "list", "x"},
			`error: sluice topics list: unexpected argument "x" (see 'sluice topics list --help')`},
		{"unknown subcommand", []string{"handler", "frob"},
			`error: sluice handler: unknown command "frob" (see 'sluice handler --help')`},
		{"misspelled subcommand", []string{"handler", "pasue", "x"},
			`error: sluice handler: unknown command "pasue"; did you mean "pause"? (see 'sluice handler --help')`},
		{"bad output", []string{"handler", "list", "-o", "xml"},
			`error: invalid argument "xml" for "-o, --output" flag: must be table, json or yaml (see 'sluice handler list --help')`},
		{"unknown flag", []string{"topics", "list", "--bogus"},
			`error: unknown flag: --bogus (see 'sluice topics list --help')`},
		{"bad handler name", []string{"handler", "get", "Orders"},
			`error: name: "Orders" must match [a-z0-9][a-z0-9-]{0,62}`},
		{"bad server", []string{"--server", "localhost:8080", "handler", "list"},
			`error: --server: API URL "localhost:8080" must be an absolute http(s) URL such as http://127.0.0.1:8080`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, f.URL, "", tc.args...)
			if r.code != 2 || r.stderr != tc.wantErr+"\n" {
				t.Errorf("got code %d, stderr %q\nwant code 2, stderr %q", r.code, r.stderr, tc.wantErr+"\n")
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("usage errors sent %d requests", n)
	}
}

func TestGroupAloneShowsHelp(t *testing.T) {
	r := run(t, "", "", "handler")
	if r.code != 0 || !strings.Contains(r.stdout, "Available Commands:") || !strings.Contains(r.stdout, "apply") {
		t.Errorf("%+v", r)
	}
}

func TestYAMLQuotesWhatWouldChangeType(t *testing.T) {
	f := newFakeAPI(t)
	spec := "name: tricky\ntopic: t\nhttp:\n  url: http://svc/\n  headers:\n" +
		"    a-bool: \"true\"\n    b-num: \"123\"\n    c-empty: \"\"\n    d-null: \"null\"\n    e-lines: \"x\\ny\"\n    f-plain: text\n"
	if r := run(t, f.URL, spec, "handler", "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	r := run(t, f.URL, "", "handler", "get", "tricky", "-o", "yaml")
	want := "" +
		"name: tricky\n" +
		"spec:\n" +
		"  name: tricky\n" +
		"  topic: t\n" +
		"  http:\n" +
		"    url: http://svc/\n" +
		"    headers:\n" +
		"      a-bool: \"true\"\n" +
		"      b-num: \"123\"\n" +
		"      c-empty: \"\"\n" +
		"      d-null: \"null\"\n" +
		"      e-lines: |-\n" +
		"        x\n" +
		"        y\n" +
		"      f-plain: text\n" +
		"  ordering: key\n" +
		"  concurrency:\n" +
		"    min: 1\n" +
		"    max: 256\n" +
		"  maxInFlightBytes: 67108864\n" +
		"  startFrom: earliest\n" +
		"  timeout: 30s\n" +
		"  retry:\n" +
		"    maxAttempts: 5\n" +
		"    initialBackoff: 200ms\n" +
		"    maxBackoff: 1m0s\n" +
		"    multiplier: 2\n" +
		"    jitter: full\n" +
		"    mode: inPlace\n" +
		"  breaker:\n" +
		"    failureRatio: 0.5\n" +
		"    minRequests: 20\n" +
		"    openFor: 30s\n" +
		"    window: 10s\n" +
		"  deadLetter:\n" +
		"    topic: tricky.dlq\n" +
		"  scaling:\n" +
		"    maxAge: 1m0s\n" +
		"    minNodes: 1\n" +
		"    maxNodes: 10\n" +
		"paused: false\n" +
		"version: 1\n" +
		"updatedAt: \"2026-03-01T12:00:00Z\"\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d, stdout:\n%s\nwant:\n%s", r.code, r.stdout, want)
	}
	var h api.Handler
	if err := yamlToAPI(r.stdout, &h); err != nil {
		t.Fatal(err)
	}
	if got := h.Spec.HTTP.Headers; got["a-bool"] != "true" || got["b-num"] != "123" || got["c-empty"] != "" || got["d-null"] != "null" || got["e-lines"] != "x\ny" {
		t.Errorf("headers read back as %q", got)
	}
}
