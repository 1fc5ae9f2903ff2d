package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

var (
	plainOnce   sync.Once
	plainBinary string
	plainErr    error
)

// plainSluice is the binary built without the race detector, whose memory
// use is what users get.
func plainSluice(t *testing.T) string {
	plainOnce.Do(func() {
		plainBinary = filepath.Join(filepath.Dir(binary), "sluice-plain")
		out, err := exec.Command("go", "build", "-o", plainBinary, "../cmd/sluice").CombinedOutput()
		if err != nil {
			plainErr = fmt.Errorf("building sluice: %v\n%s", err, out)
		}
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainBinary
}

// rssMiB reads a process's resident set size.
func rssMiB(t *testing.T, pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("reading the RSS of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestMemoryStaysFlatBehindASlowHandler puts a backlog of 1,000,000
// messages behind a slow handler on a consuming node (the broker runs in
// another process) and checks that the node's resident memory stays under
// a fixed bound while it works: fetching stops while in-flight messages or
// bytes are at their bounds.
func TestMemoryStaysFlatBehindASlowHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a million messages")
	}
	const (
		backlog  = 1_000_000
		boundMiB = 150.0
	)
	saved := binary
	binary = plainSluice(t)
	defer func() { binary = saved }()
	broker := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t)}
	serve(t, broker)
	tc, err := topics.New(topics.Config{Brokers: []string{broker.kafkaAddr}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Create(context.Background(), "backlog", 12, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	value := []byte(strings.Repeat("x", 100))
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := w * 5000; start < backlog; start += 4 * 5000 {
				recs := make([]topics.Record, 0, 5000)
				for i := start; i < min(backlog, start+5000); i++ {
					recs = append(recs, topics.Record{Key: []byte("k" + strconv.Itoa(i%10000)), Value: value, Partition: -1})
				}
				if _, err := tc.Produce(context.Background(), "backlog", recs); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d messages in %s", backlog, time.Since(start).Round(time.Millisecond))

	var handled atomic.Int64
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		handled.Add(1)
	}))
	defer ep.Close()
	consumer := serveOpts{brokers: broker.kafkaAddr, httpAddr: freeAddr(t)}
	node := serve(t, consumer)
	cli(t, consumer.httpAddr, handlerSpec("slowpoke", "backlog", ep.URL, 64), "handler", "apply", "-f", "-")
	testkit.Eventually(t, 30*time.Second, func() bool { return handled.Load() > 500 }, "the slow handler to start")
	peak := 0.0
	var samples []string
	for i := 0; i < 20; i++ {
		rss := rssMiB(t, node.cmd.Process.Pid)
		peak = max(peak, rss)
		samples = append(samples, fmt.Sprintf("%.0f", rss))
		time.Sleep(500 * time.Millisecond)
	}
	h := getHandler(t, consumer.httpAddr, "slowpoke")
	fmt.Printf("memory behind a slow handler: backlog %d, handled %d, lag %d, RSS MiB %s (peak %.0f, bound %.0f)\n",
		backlog, handled.Load(), h.Status.Lag, strings.Join(samples, " "), peak, boundMiB)
	if h.Status.Lag < backlog/2 {
		t.Fatalf("lag %d: the backlog was not behind the handler", h.Status.Lag)
	}
	if peak > boundMiB {
		t.Fatalf("resident memory peaked at %.0f MiB with a backlog of %d, over the bound of %.0f MiB", peak, backlog, boundMiB)
	}
}
