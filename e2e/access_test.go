package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
)

func httpsClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// sluiceCmd runs the real CLI with extra environment and returns its exit
// code and output.
func sluiceCmd(t *testing.T, env []string, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("sluice %s: %v", strings.Join(args, " "), err)
	}
	return 0, string(out)
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	adminToken     = "e2e-admin-token-0123456789"
	publisherToken = "e2e-publisher-token-0123456789"
	viewerToken    = "e2e-viewer-token-0123456789"
)

// tokensConfig is a config file with an admin token in the file, and a
// tokens file with a viewer token and a publisher token given by its hash.
func tokensConfig(t *testing.T, extra string) string {
	sum := sha256.Sum256([]byte(publisherToken))
	tokensFile := writeTemp(t, "tokens.yaml", fmt.Sprintf("- {name: ci, role: publisher, tokenSHA256: %s}\n- {name: grafana, role: viewer, token: %s}\n",
		hex.EncodeToString(sum[:]), viewerToken))
	return writeTemp(t, "sluice.yaml", fmt.Sprintf("api:\n  tokens:\n    - {name: ops, role: admin, token: %s}\n  tokensFile: %s\n%s", adminToken, tokensFile, extra))
}

// TestTokensAndRolesOverTheRealBinary runs a node with tokens of the three
// roles (from the config and a tokens file, one given by its hash) and
// drives it with the real CLI: 401 without a token, 403 for a role too
// low, success for a role high enough; health probes stay open; failed
// attempts are rate-limited; no token ever shows in the log.
func TestTokensAndRolesOverTheRealBinary(t *testing.T) {
	o := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t),
		extra: []string{"--config", tokensConfig(t, "")}}
	node := serve(t, o)
	ep := newSink(t, 0)
	server := []string{"SLUICE_SERVER=http://" + o.httpAddr}
	as := func(tok string) []string { return append(append([]string(nil), server...), "SLUICE_TOKEN="+tok) }

	type step struct {
		name  string
		env   []string
		stdin string
		args  []string
		code  int
		has   string
	}
	spec := handlerSpec("guarded", "guarded-topic", ep.URL, 4)
	for _, s := range []step{
		{"no token", server, "", []string{"handler", "list"}, 2, "a bearer token is required"},
		{"no token says how", server, "", []string{"handler", "list"}, 2, "--token or SLUICE_TOKEN"},
		{"wrong token", as("not-a-token-at-all-000"), "", []string{"handler", "list"}, 2, "the token is not valid"},
		{"viewer reads", as(viewerToken), "", []string{"handler", "list"}, 0, "no handlers registered"},
		{"viewer cannot apply", as(viewerToken), spec, []string{"handler", "apply", "-f", "-"}, 2, "needs the admin role; the token's role is viewer"},
		{"publisher cannot apply", as(publisherToken), spec, []string{"handler", "apply", "-f", "-"}, 2, "needs the admin role; the token's role is publisher"},
		{"admin applies", as(adminToken), spec, []string{"handler", "apply", "-f", "-"}, 0, "handler/guarded created"},
		{"viewer cannot publish", as(viewerToken), "v-0\n", []string{"publish", "guarded-topic"}, 2, "needs the publisher role; the token's role is viewer"},
		{"publisher publishes (--token wins over SLUICE_TOKEN)", as(viewerToken), lines("m-", 0, 20, false), []string{"--token", publisherToken, "publish", "guarded-topic"}, 0, ""},
		{"publisher cannot pause", as(publisherToken), "", []string{"handler", "pause", "guarded"}, 2, "needs the admin role"},
		{"viewer cannot purge", as(viewerToken), "", []string{"dlq", "purge", "guarded", "--all"}, 2, "needs the admin role"},
		{"admin pauses", as(adminToken), "", []string{"handler", "pause", "guarded"}, 0, ""},
		{"admin resumes", as(adminToken), "", []string{"handler", "resume", "guarded"}, 0, ""},
	} {
		code, out := sluiceCmd(t, s.env, s.stdin, s.args...)
		if code != s.code || !strings.Contains(out, s.has) {
			t.Errorf("%s: exit %d, output %q; want exit %d and %q", s.name, code, out, s.code, s.has)
		}
	}
	testkit.Eventually(t, 60*time.Second, func() bool { return ep.distinctValues() == 20 }, "the 20 published messages delivered")

	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/v1/overview": 401, "/v1/nothing": 401, "/": 200} {
		resp, err := http.Get("http://" + o.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a token: %d, want %d", path, resp.StatusCode, want)
		}
	}
	var who struct{ Role string }
	req, _ := http.NewRequest("GET", "http://"+o.httpAddr+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+publisherToken)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		_ = json.NewDecoder(resp.Body).Decode(&who)
		resp.Body.Close()
		if who.Role != "publisher" {
			t.Errorf("whoami as the publisher: %q", who.Role)
		}
	}

	// Failed attempts from one address: after a burst of 10 (refilled at
	// one a second), 429 with Retry-After, for a good token too.
	try := func(tok string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+o.httpAddr+"/v1/handlers", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	limited := 0
	for i := 0; i < 40 && limited == 0; i++ {
		resp := try(fmt.Sprintf("guess-%d-000000000000", i))
		switch resp.StatusCode {
		case 401:
		case 429:
			limited = i + 1
			if resp.Header.Get("Retry-After") == "" {
				t.Error("a 429 without Retry-After")
			}
		default:
			t.Fatalf("a wrong token answered %d", resp.StatusCode)
		}
	}
	if limited == 0 {
		t.Fatal("40 wrong tokens in a row were never rate-limited")
	}
	if resp := try(viewerToken); resp.StatusCode != 429 {
		t.Errorf("a good token from a rate-limited address: %d, want 429", resp.StatusCode)
	}
	t.Logf("rate-limited after %d wrong tokens in a row", limited)
	// The budget refills at one a second: a good token is let in again.
	testkit.Eventually(t, 30*time.Second, func() bool {
		code, _ := sluiceCmd(t, as(viewerToken), "", "handler", "list")
		return code == 0
	}, "the viewer let in again once the failure budget refills")

	log := node.logText()
	for _, tok := range []string{adminToken, publisherToken, viewerToken} {
		if strings.Contains(log, tok) {
			t.Errorf("the node's log shows a token")
		}
	}
}

// TestOpenAPIOnlyOnLoopback: with no tokens, a node refuses a non-loopback
// API address unless --insecure, and warns when it is given.
func TestOpenAPIOnlyOnLoopback(t *testing.T) {
	_, port, _ := strings.Cut(freeAddr(t), ":")
	code, out := sluiceCmd(t, nil, "", "serve", "--data-dir", t.TempDir(), "--kafka-addr", freeAddr(t), "--http-addr", "0.0.0.0:"+port)
	if code != 2 || !strings.Contains(out, "httpAddr: 0.0.0.0:"+port+" is not a loopback address and the API has no tokens: set api.tokens or api.tokensFile, or pass --insecure") {
		t.Fatalf("open API on 0.0.0.0: exit %d, %s", code, out)
	}
	o := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: "127.0.0.1:" + port,
		extra: []string{"--http-addr", "0.0.0.0:" + port, "--insecure", "--log-level", "info"}}
	p := serve(t, o)
	if !strings.Contains(p.logText(), "the API is open to anyone who can reach it") {
		t.Fatalf("no warning in the log:\n%s", p.logText())
	}
}

// TestAPIOverTLS serves the API over HTTPS from a certificate made for the
// test, and checks it with two clients: the sluice CLI (--cacert) and curl.
// Without the CA, both refuse the connection.
func TestAPIOverTLS(t *testing.T) {
	ca := testkit.NewCA(t)
	cert, key := ca.Issue(t, "127.0.0.1")
	o := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t), caFile: ca.CertFile,
		extra: []string{"--config", tokensConfig(t, fmt.Sprintf("  tls: {certFile: %s, keyFile: %s}\n", cert, key))}}
	serve(t, o)
	base := "https://" + o.httpAddr
	env := []string{"SLUICE_SERVER=" + base, "SLUICE_TOKEN=" + adminToken}

	if code, out := sluiceCmd(t, env, "", "--cacert", ca.CertFile, "topics", "create", "tls-topic", "--partitions", "3"); code != 0 {
		t.Fatalf("CLI over TLS with --cacert: exit %d, %s", code, out)
	}
	if code, out := sluiceCmd(t, append(env, "SLUICE_CACERT="+ca.CertFile), "", "topics", "list"); code != 0 || !strings.Contains(out, "tls-topic") {
		t.Fatalf("CLI over TLS with SLUICE_CACERT: exit %d, %s", code, out)
	}
	if code, out := sluiceCmd(t, env, "", "topics", "list"); code != 1 || !strings.Contains(out, "certificate") {
		t.Fatalf("CLI over TLS without the CA: exit %d, %s; want a certificate error", code, out)
	}
	// curl: a TLS client that is not Go's.
	curl := func(args ...string) (string, error) {
		out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "20"}, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := curl("--cacert", ca.CertFile, "-H", "Authorization: Bearer "+adminToken, base+"/v1/whoami")
	if err != nil || !strings.Contains(out, `"role": "admin"`) {
		t.Fatalf("curl --cacert whoami: %v %s", err, out)
	}
	if out, err := curl(base + "/healthz"); err == nil {
		t.Fatalf("curl without the CA trusted the node: %s", out)
	}
	// Plain HTTP to the TLS port is refused, not served.
	if out, err := curl("http://" + o.httpAddr + "/v1/whoami"); err == nil && !strings.Contains(out, "HTTP request to an HTTPS server") {
		t.Fatalf("plain HTTP on the TLS port: %s", out)
	}
}
