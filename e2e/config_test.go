package e2e

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
)

// TestConfigPrecedenceOverTheRealBinary sets httpAddr in the file, the
// environment and a flag (the flag's address is served), kafkaAddr in the
// file and the environment (the environment's is), and dataDir in the file
// alone (it is used); config print agrees.
func TestConfigPrecedenceOverTheRealBinary(t *testing.T) {
	dir := t.TempDir()
	fileHTTP, envHTTP, flagHTTP := freeAddr(t), freeAddr(t), freeAddr(t)
	fileKafka, envKafka := freeAddr(t), freeAddr(t)
	dataDir := filepath.Join(dir, "from-file")
	cfgPath := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte("httpAddr: "+fileHTTP+"\nkafkaAddr: "+fileKafka+"\ndataDir: "+dataDir+"\nlog:\n  level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SLUICE_HTTP_ADDR="+envHTTP, "SLUICE_KAFKA_ADDR="+envKafka)

	printCmd := exec.Command(binary, "config", "print", "--config", cfgPath, "--http-addr", flagHTTP)
	printCmd.Env = env
	out, err := printCmd.CombinedOutput()
	if err != nil {
		t.Fatalf("config print: %v\n%s", err, out)
	}
	for _, want := range []string{"httpAddr: " + flagHTTP, "kafkaAddr: " + envKafka, "dataDir: " + dataDir, "level: warn"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("config print lacks %q:\n%s", want, out)
		}
	}

	cmd := exec.Command(binary, "serve", "--config", cfgPath, "--http-addr", flagHTTP)
	cmd.Env = env
	var log lockedWriter
	var buf strings.Builder
	log.w = &buf
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			log.mu.Lock()
			t.Logf("node log:\n%s", buf.String())
			log.mu.Unlock()
		}
	})
	testkit.Eventually(t, 60*time.Second, func() bool {
		resp, err := http.Get("http://" + flagHTTP + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "the node ready on the flag's address")
	for _, a := range []string{fileHTTP, envHTTP, fileKafka} {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("something listens on %s, an address that a higher layer overrode", a)
		}
	}
	if c, err := net.DialTimeout("tcp", envKafka, 5*time.Second); err != nil {
		t.Errorf("the embedded broker does not listen on the environment's kafkaAddr: %v", err)
	} else {
		c.Close()
	}
	if _, err := os.Stat(filepath.Join(dataDir, "broker")); err != nil {
		t.Errorf("the file's dataDir is not used: %v", err)
	}
	if code := p.term(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}
