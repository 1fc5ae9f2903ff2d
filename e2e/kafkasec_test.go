package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
)

// TestSASLAndTLSFleet runs an embedded broker that requires SASL
// SCRAM-SHA-512 over TLS (node A, whose own clients log in with the same
// account and pin the broker's certificate) and a second node that reaches
// it with --brokers, the CA and the credentials (node B). The two share a
// handler's partitions and deliver every message, from the CLI and from
// kcat over SASL_SSL. A node with a wrong password, or without the CA,
// fails at start with a clear error; kcat without credentials gets nothing.
func TestSASLAndTLSFleet(t *testing.T) {
	ca := testkit.NewCA(t)
	cert, key := ca.Issue(t, "127.0.0.1")
	const user, pass = "sluice-node", "e2e-scram-password-0123"
	a := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t),
		env: []string{"E2E_KAFKA_PASSWORD=" + pass},
		extra: []string{"--config", writeTemp(t, "a.yaml", fmt.Sprintf(`embedded:
  sasl: {mechanism: SCRAM-SHA-512, username: %s, passwordRef: "env:E2E_KAFKA_PASSWORD"}
  tls: {certFile: %s, keyFile: %s}
`, user, cert, key))}}
	nodeA := serve(t, a)
	clientConfig := func(password, caFile string) string {
		tlsLine := "  tls: {enabled: true}\n"
		if caFile != "" {
			tlsLine = "  tls: {caFile: " + caFile + "}\n"
		}
		return writeTemp(t, "b.yaml", fmt.Sprintf("brokers: [%s]\nkafka:\n%s  sasl: {mechanism: SCRAM-SHA-512, username: %s, password: %s}\n",
			a.kafkaAddr, tlsLine, user, password))
	}
	b := serveOpts{brokers: a.kafkaAddr, httpAddr: freeAddr(t), extra: []string{"--config", clientConfig(pass, ca.CertFile)}}
	nodeB := serve(t, b)

	// Misconfigured nodes fail at start, fast, saying why.
	for _, c := range []struct{ name, config, want string }{
		{"wrong password", clientConfig("not-the-password", ca.CertFile), "check the SASL user, password and mechanism (kafka.sasl)"},
		{"no CA", clientConfig(pass, ""), "the broker's certificate is signed by an unknown CA: set kafka.tls.caFile"},
	} {
		start := time.Now()
		code, out := sluiceCmd(t, nil, "", "serve", "--http-addr", freeAddr(t), "--config", c.config)
		took := time.Since(start)
		if code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d after %s, output:\n%s\nwant an error with %q", c.name, code, took, out, c.want)
		}
		if strings.Contains(out, pass) || strings.Contains(out, "not-the-password") {
			t.Errorf("%s: the output shows the password", c.name)
		}
		t.Logf("%s: refused at start in %s", c.name, took.Round(time.Millisecond))
	}

	ep := newSink(t, time.Millisecond)
	cli(t, a.httpAddr, handlerSpec("secure", "secure-topic", ep.URL, 8), "handler", "apply", "-f", "-")
	testkit.Eventually(t, 60*time.Second, func() bool {
		ha, hb := getHandler(t, a.httpAddr, "secure"), getHandler(t, b.httpAddr, "secure")
		pa, pb := ownedOf(ha, "secure-topic"), ownedOf(hb, "secure-topic")
		return pa > 0 && pb > 0 && pa+pb == 12
	}, "both nodes own part of the 12 partitions")

	const n = 3000
	cli(t, b.httpAddr, lines("cli-", 0, n, false), "publish", "secure-topic")
	kcatArgs := []string{"-b", a.kafkaAddr, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
		"-X", "sasl.username=" + user, "-X", "sasl.password=" + pass, "-X", "ssl.ca.location=" + ca.CertFile}
	const k = 500
	kcat(t, lines("kcat-", 0, k, true), append([]string{"-P", "-t", "secure-topic", "-K:"}, kcatArgs...)...)
	testkit.Eventually(t, 120*time.Second, func() bool { return ep.distinctValues() == n+k }, "all %d messages", n+k)
	if miss := append(ep.missing("cli-", n), ep.missing("kcat-", k)...); len(miss) > 0 {
		t.Fatalf("%d messages lost, first %v", len(miss), miss[0])
	}
	fmt.Printf("SASL SCRAM-SHA-512 + TLS fleet: %d of %d messages delivered by two nodes, %d duplicates\n", n+k, n+k, ep.duplicates())
	if d := ep.duplicates(); d != 0 {
		t.Fatalf("%d duplicates without any failure", d)
	}

	// kcat reads back over SASL_SSL; without credentials, it gets nothing.
	out := kcat(t, "", append([]string{"-C", "-t", "secure-topic", "-e", "-q", "-f", "%s\n"}, kcatArgs...)...)
	if got := strings.Count(out, "\n"); got != n+k {
		t.Fatalf("kcat read %d messages back, want %d", got, n+k)
	}
	bad := exec.Command("kcat", "-L", "-b", a.kafkaAddr, "-m", "5", "-X", "security.protocol=SSL", "-X", "ssl.ca.location="+ca.CertFile)
	bad.Env = os.Environ()
	if out, err := bad.CombinedOutput(); err == nil {
		t.Fatalf("kcat without SASL listed the broker's metadata:\n%s", out)
	}
	if strings.Contains(nodeA.logText()+nodeB.logText(), pass) {
		t.Fatal("a node's log shows the SASL password")
	}
}
