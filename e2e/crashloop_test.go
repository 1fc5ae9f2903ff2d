package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
)

// TestCrashLoopKill9 runs a Sluice binary whose Go handler kills its own
// process (SIGKILL) on one message, restarting it each time it dies, as a
// supervisor would. Attempt counts in memory die with the process; the
// crash-loop guard's do not: the poison ends up dead-lettered, exactly it,
// and everything else is delivered.
func TestCrashLoopKill9(t *testing.T) {
	crasher := filepath.Join(filepath.Dir(binary), "crasher")
	args := []string{"build", "-race", "-o", crasher, "./testdata/crasher"}
	if os.Getenv("SLUICE_E2E_RACE") == "0" {
		args = []string{"build", "-o", crasher, "./testdata/crasher"}
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("building the crasher: %v\n%s", err, out)
	}

	o := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t)}
	serve(t, o) // the embedded broker and the API; the Go handler runs only in the crasher
	ep := newSink(t, 0)
	const n = 300 // besides the poison

	var logs bytes.Buffer
	out := &lockedWriter{w: &logs}
	start := func() *exec.Cmd {
		cmd := exec.Command(crasher)
		cmd.Env = append(os.Environ(), "CRASHER_BROKERS="+o.kafkaAddr, "CRASHER_HTTP_ADDR="+freeAddr(t), "CRASHER_SINK="+ep.URL)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	cur := start()
	exited := make(chan error, 1)
	go func() { exited <- cur.Wait() }()
	t.Cleanup(func() {
		_ = cur.Process.Kill()
		if t.Failed() {
			out.mu.Lock()
			t.Logf("crasher output:\n%s", logs.String())
			out.mu.Unlock()
		}
	})
	// The crasher registers the handler and creates its topic.
	testkit.Eventually(t, 90*time.Second, func() bool { return getHandler(t, o.httpAddr, "crasher").Name == "crasher" },
		"the crasher to register its handler")
	if code := publishTo(o.httpAddr, "crash-topic", "crash-", 0, n/2, 4); code != 200 {
		t.Fatalf("publish: HTTP %d", code)
	}
	if code := apiJSON(t, "POST", "http://"+o.httpAddr+"/v1/topics/crash-topic/messages", `{"messages":[{"key":"k1","value":"poison"}]}`, nil); code != 200 {
		t.Fatalf("publish poison: HTTP %d", code)
	}
	if code := publishTo(o.httpAddr, "crash-topic", "crash-", n/2, n/2, 4); code != 200 {
		t.Fatalf("publish: HTTP %d", code)
	}

	crashes := 0
	deadline := time.Now().Add(5 * time.Minute)
	var entries map[string]int
	for {
		select {
		case <-exited:
			crashes++
			if crashes > 20 {
				t.Fatalf("the crasher died %d times and the poison is still not dead-lettered", crashes)
			}
			cur = start()
			go func(c *exec.Cmd) { exited <- c.Wait() }(cur)
		case <-time.After(500 * time.Millisecond):
		}
		entries, _, _ = deadLetters(t, o.httpAddr, "crasher")
		if len(entries) > 0 && ep.distinctValues() >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5m and %d crashes: %d dead letters, %d of %d messages delivered", crashes, len(entries), ep.distinctValues(), n)
		}
	}
	if miss := ep.missing("crash-", n); len(miss) > 0 {
		t.Fatalf("%d messages lost, first %v", len(miss), miss[0])
	}
	if len(entries) != 1 {
		t.Fatalf("dead letters %v: want the poison alone", entries)
	}
	var page struct {
		Entries []struct {
			ID       string `json:"id"`
			Error    string `json:"error"`
			Attempts int    `json:"attempts"`
		} `json:"entries"`
	}
	apiJSON(t, "GET", "http://"+o.httpAddr+"/v1/handlers/crasher/dlq", "", &page)
	if len(page.Entries) != 1 || !strings.Contains(page.Entries[0].Error, "crash loop") || page.Entries[0].Attempts != 3 {
		t.Fatalf("dead-letter entries %+v: want one crash loop after 3 sessions", page.Entries)
	}
	var show struct {
		Value *string `json:"value"`
	}
	apiJSON(t, "GET", "http://"+o.httpAddr+"/v1/handlers/crasher/dlq/"+page.Entries[0].ID, "", &show)
	if show.Value == nil || *show.Value != "poison" {
		t.Fatalf("the dead-lettered message is %v, want poison", show.Value)
	}
	ep.mu.Lock()
	reached := ep.values["poison"]
	ep.mu.Unlock()
	if reached {
		t.Fatal("the poison reached the sink")
	}
	fmt.Printf("crash loop: the poison killed the node %d times, then was dead-lettered (%q); %d of %d other messages delivered, %d duplicates\n",
		crashes, page.Entries[0].Error, n, n, ep.duplicates())
}
