// Package e2e runs the real sluice binary as separate processes, kills
// them with SIGKILL, and checks what the handler endpoint received.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/testkit"
)

var binary string

// maxDupsPerKill bounds the redeliveries one kill -9 may cause in these
// tests: the messages finished since the last commit (a 200ms commit
// interval at a few thousand messages a second) plus those in flight.
const maxDupsPerKill = 1000

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "sluice")
	// The nodes run with the race detector, except in a soak that asks for
	// production speed (SLUICE_E2E_RACE=0: make soak).
	args := []string{"build", "-race", "-o", binary, "../cmd/sluice"}
	if os.Getenv("SLUICE_E2E_RACE") == "0" {
		args = []string{"build", "-o", binary, "../cmd/sluice"}
	}
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sluice:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is one sluice serve process.
type proc struct {
	cmd      *exec.Cmd
	httpAddr string
	log      *bytes.Buffer
	done     chan struct{}
}

type serveOpts struct {
	dataDir, kafkaAddr, httpAddr, brokers string
	// extra flags, after the defaults (a later flag wins).
	extra []string
	// env is added to the test's environment.
	env []string
	// caFile, when set, means the API serves HTTPS with a certificate this
	// CA signed.
	caFile string
}

func serve(t *testing.T, o serveOpts) *proc {
	t.Helper()
	args := []string{"serve", "--http-addr", o.httpAddr, "--session-timeout", "3s", "--commit-interval", "200ms",
		"--drain-timeout", "5s", "--log-level", "warn"}
	if o.brokers != "" {
		args = append(args, "--brokers", o.brokers)
	} else {
		args = append(args, "--data-dir", o.dataDir, "--kafka-addr", o.kafkaAddr)
	}
	args = append(args, o.extra...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), o.env...)
	p := &proc{cmd: cmd, httpAddr: o.httpAddr, log: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stdout = &lockedWriter{w: p.log}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("log of node %s:\n%s", o.httpAddr, p.logText())
		}
	})
	hc, scheme := http.DefaultClient, "http://"
	if o.caFile != "" {
		hc, scheme = httpsClient(t, o.caFile), "https://"
	}
	testkit.Eventually(t, 60*time.Second, func() bool {
		resp, err := hc.Get(scheme + o.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "node %s ready; log:\n%s", o.httpAddr, lazyLog{p})
	return p
}

// lazyLog prints a node's log when a failure message is formatted.
type lazyLog struct{ p *proc }

func (l lazyLog) String() string { return l.p.logText() }

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term stops the node with SIGTERM and returns its exit code, or -1 when it
// had to be killed because it did not exit within grace.
func (p *proc) term(grace time.Duration) int {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(grace):
		p.kill()
		return -1
	}
}

func (p *proc) logText() string {
	w := p.cmd.Stdout.(*lockedWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.log.String()
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// cli runs a sluice client command against server.
func cli(t *testing.T, server, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "SLUICE_SERVER=http://"+server)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sink is the handler endpoint: a real HTTP server counting deliveries per
// CloudEvents id.
type sink struct {
	*httptest.Server
	mu       sync.Mutex
	seen     map[string]int
	values   map[string]bool
	requests atomic.Int64
}

func newSink(t *testing.T, delay time.Duration) *sink {
	s := &sink{seen: map[string]int{}, values: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if delay > 0 {
			time.Sleep(delay)
		}
		s.mu.Lock()
		s.seen[r.Header.Get("Ce-Id")]++
		s.values[string(b)] = true
		s.mu.Unlock()
		s.requests.Add(1)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) distinctValues() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

// duplicates is deliveries beyond the first, per message id.
func (s *sink) duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := 0
	for _, c := range s.seen {
		d += c - 1
	}
	return d
}

func (s *sink) missing(prefix string, n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var miss []string
	for i := 0; i < n; i++ {
		if v := prefix + strconv.Itoa(i); !s.values[v] {
			miss = append(miss, v)
		}
	}
	return miss
}

func lines(prefix string, from, to int, kv bool) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		if kv {
			fmt.Fprintf(&b, "key%d:%s%d\n", i%97, prefix, i)
		} else {
			fmt.Fprintf(&b, "%s%d\n", prefix, i)
		}
	}
	return b.String()
}

func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is not installed (apt-get install kcat; .ci/run does it): %v", err)
	}
	cmd := exec.Command("kcat", args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func handlerSpec(name, topic, url string, concurrency int) string {
	return fmt.Sprintf("name: %s\ntopic: %s\nconcurrency: %d\nhttp:\n  url: %s\n  timeout: 5s\n", name, topic, concurrency, url)
}

func getHandler(t *testing.T, server, name string) api.Handler {
	t.Helper()
	resp, err := http.Get("http://" + server + "/v1/handlers/" + name)
	if err != nil {
		return api.Handler{}
	}
	defer resp.Body.Close()
	var h api.Handler
	_ = json.NewDecoder(resp.Body).Decode(&h)
	return h
}

// ownedOf counts the partitions of topic that the node's handler owns.
func ownedOf(h api.Handler, topic string) int {
	if h.Status == nil {
		return 0
	}
	n := 0
	for _, p := range h.Status.Partitions {
		if p.Topic == topic {
			n++
		}
	}
	return n
}

func topicMessages(t *testing.T, server, topic string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + server + "/v1/topics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tl api.TopicList
	if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
		t.Fatal(err)
	}
	for _, ti := range tl.Topics {
		if ti.Name == topic {
			return ti.Messages
		}
	}
	return -1
}

// TestKill9MidStreamLosesNothing publishes 10,000 messages through the CLI
// and kcat, kills the node with SIGKILL while it delivers them, restarts it
// on the same data dir, and checks that every message reached the endpoint.
func TestKill9MidStreamLosesNothing(t *testing.T) {
	dir := t.TempDir()
	o := serveOpts{dataDir: dir, kafkaAddr: freeAddr(t), httpAddr: freeAddr(t)}
	node := serve(t, o)
	ep := newSink(t, 2*time.Millisecond)

	out := cli(t, o.httpAddr, handlerSpec("crashy", "crash-topic", ep.URL, 8), "handler", "apply", "-f", "-")
	if !strings.Contains(out, "handler/crashy created") {
		t.Fatalf("apply said %q", out)
	}
	// A topic first produced to by kcat must be durable too.
	kcat(t, lines("early-", 0, 1000, false), "-P", "-b", o.kafkaAddr, "-t", "kcat-first")

	const half = 5000
	cli(t, o.httpAddr, lines("cli-", 0, half, false), "publish", "crash-topic")
	kcat(t, lines("kcat-", 0, half, true), "-P", "-b", o.kafkaAddr, "-t", "crash-topic", "-K:")

	testkit.Eventually(t, 60*time.Second, func() bool { return ep.distinctValues() >= 2500 }, "2,500 deliveries before the kill")
	node.kill()
	before := ep.distinctValues()
	t.Logf("killed the node with SIGKILL after %d distinct deliveries", before)
	if before >= 2*half {
		t.Fatalf("everything was delivered before the kill (%d): the test did not kill mid-stream", before)
	}

	serve(t, o)
	testkit.Eventually(t, 120*time.Second, func() bool { return ep.distinctValues() == 2*half }, "all %d messages after the restart", 2*half)
	if miss := append(ep.missing("cli-", half), ep.missing("kcat-", half)...); len(miss) > 0 {
		t.Fatalf("%d messages lost, first %v", len(miss), miss[0])
	}
	dups := ep.duplicates()
	fmt.Printf("kill -9 mid-stream: %d of %d messages delivered, %d duplicates (%d deliveries before the kill)\n",
		2*half, 2*half, dups, before)
	// Duplicates come only from messages finished but not yet committed at
	// the kill: one commit interval (200ms) of deliveries at this rate (8
	// in flight, 2ms each: about 800) plus what was in flight.
	if dups > maxDupsPerKill {
		t.Fatalf("%d duplicates after one kill -9, more than the bound of %d", dups, maxDupsPerKill)
	}
	if n := topicMessages(t, o.httpAddr, "kcat-first"); n != 1000 {
		t.Fatalf("topic kcat-first after kill -9 has %d messages, want 1000", n)
	}
	consumed := kcat(t, "", "-C", "-b", o.kafkaAddr, "-t", "kcat-first", "-e", "-q", "-f", "%s\n")
	if got := strings.Count(consumed, "early-"); got != 1000 {
		t.Fatalf("kcat read back %d messages of kcat-first, want 1000", got)
	}
}

// TestFleetSharesPartitionsAndSurvivesKill9 runs two nodes on one broker:
// they share the handler's partitions, and killing either with SIGKILL
// moves its partitions to the other without losing a message.
func TestFleetSharesPartitionsAndSurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	a := serveOpts{dataDir: dir, kafkaAddr: freeAddr(t), httpAddr: freeAddr(t)}
	nodeA := serve(t, a)
	b := serveOpts{brokers: a.kafkaAddr, httpAddr: freeAddr(t)}
	nodeB := serve(t, b)
	ep := newSink(t, 3*time.Millisecond)

	cli(t, a.httpAddr, handlerSpec("fleet", "fleet-topic", ep.URL, 8), "handler", "apply", "-f", "-")
	// Node B learns of the handler from the registry topic and joins the group.
	shared := func() bool {
		ha, hb := getHandler(t, a.httpAddr, "fleet"), getHandler(t, b.httpAddr, "fleet")
		if ha.Status == nil || hb.Status == nil {
			return false
		}
		pa, pb := ownedOf(ha, "fleet-topic"), ownedOf(hb, "fleet-topic")
		return pa > 0 && pb > 0 && pa+pb == 12
	}
	testkit.Eventually(t, 60*time.Second, shared, "both nodes own part of the 12 partitions")

	const n1 = 5000
	cli(t, a.httpAddr, lines("one-", 0, n1, false), "publish", "fleet-topic")
	testkit.Eventually(t, 60*time.Second, func() bool { return ep.distinctValues() >= 1000 }, "deliveries before killing B")
	nodeB.kill()
	t.Logf("killed node B after %d deliveries", ep.distinctValues())
	testkit.Eventually(t, 120*time.Second, func() bool { return ep.distinctValues() == n1 }, "all %d messages on node A alone", n1)
	if n := ownedOf(getHandler(t, a.httpAddr, "fleet"), "fleet-topic"); n != 12 {
		t.Fatalf("node A owns %d partitions after B died, want 12", n)
	}

	// Now the other way round: B is back, A (which also hosts the broker)
	// dies and comes back on the same data dir; B rides out the outage.
	nodeB = serve(t, b)
	testkit.Eventually(t, 60*time.Second, shared, "both nodes share again")
	const n2 = 5000
	cli(t, a.httpAddr, lines("two-", 0, n2, false), "publish", "fleet-topic")
	testkit.Eventually(t, 60*time.Second, func() bool { return ep.distinctValues() >= n1+1000 }, "deliveries before killing A")
	nodeA.kill()
	t.Logf("killed node A after %d deliveries", ep.distinctValues())
	// With its broker gone, B says so on /readyz and keeps running.
	var health api.Health
	testkit.Eventually(t, 30*time.Second, func() bool {
		return apiJSON(t, "GET", "http://"+b.httpAddr+"/readyz", "", &health) == 503 && strings.HasPrefix(health.Checks["broker"], "unreachable")
	}, "node B to report not ready while the broker is down")
	serve(t, a)
	testkit.Eventually(t, 60*time.Second, func() bool {
		return apiJSON(t, "GET", "http://"+b.httpAddr+"/readyz", "", nil) == 200
	}, "node B ready again once the broker is back")
	testkit.Eventually(t, 180*time.Second, func() bool { return ep.distinctValues() == n1+n2 }, "all %d messages", n1+n2)
	if miss := append(ep.missing("one-", n1), ep.missing("two-", n2)...); len(miss) > 0 {
		t.Fatalf("%d messages lost, first %v", len(miss), miss[0])
	}
	fmt.Printf("fleet: %d of %d messages delivered across two kill -9s, %d duplicates\n", n1+n2, n1+n2, ep.duplicates())
	if d := ep.duplicates(); d > 2*maxDupsPerKill {
		t.Fatalf("%d duplicates after two kill -9s, more than the bound of %d", d, 2*maxDupsPerKill)
	}

	// Deleting the handler through one node stops it on every node.
	if code := apiJSON(t, "DELETE", "http://"+a.httpAddr+"/v1/handlers/fleet", "", nil); code != 204 {
		t.Fatalf("delete: HTTP %d", code)
	}
	testkit.Eventually(t, 30*time.Second, func() bool {
		return apiJSON(t, "GET", "http://"+b.httpAddr+"/v1/handlers/fleet", "", nil) == 404
	}, "node B to drop the deleted handler")
	before := ep.requests.Load()
	cli(t, a.httpAddr, lines("three-", 0, 100, false), "publish", "fleet-topic")
	testkit.Consistently(t, 2*time.Second, func() bool { return ep.requests.Load() == before },
		"no delivery after the handler was deleted")
	_ = nodeB

}

func apiJSON(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// deadLetters returns the source offsets (as topic/partition/offset) of
// every dead-letter entry of handler, with how often each occurs, the
// entries' states, and how many duplicate records the listing folded into
// the entries.
func deadLetters(t *testing.T, server, handler string) (map[string]int, map[string]int, int) {
	t.Helper()
	sources, states := map[string]int{}, map[string]int{}
	folded := 0
	for offset := 0; ; {
		var page struct {
			Entries []struct {
				SourceTopic     string   `json:"sourceTopic"`
				SourcePartition int      `json:"sourcePartition"`
				SourceOffset    int64    `json:"sourceOffset"`
				State           string   `json:"state"`
				Duplicates      []string `json:"duplicates"`
			} `json:"entries"`
			Next int `json:"next"`
		}
		if code := apiJSON(t, "GET", fmt.Sprintf("http://%s/v1/handlers/%s/dlq?limit=1000&offset=%d", server, handler, offset), "", &page); code != 200 {
			t.Fatalf("listing dead letters: HTTP %d", code)
		}
		for _, e := range page.Entries {
			sources[fmt.Sprintf("%s/%d/%d", e.SourceTopic, e.SourcePartition, e.SourceOffset)]++
			states[e.State]++
			folded += len(e.Duplicates)
		}
		if page.Next == 0 {
			return sources, states, folded
		}
		offset = page.Next
	}
}

// TestKill9AroundTheDeadLetterQueue kills the node while it dead-letters a
// stream of bad messages (between dead-letter writes and commits), then
// while it delivers a replay of them; nothing is lost either time.
func TestKill9AroundTheDeadLetterQueue(t *testing.T) {
	dir := t.TempDir()
	o := serveOpts{dataDir: dir, kafkaAddr: freeAddr(t), httpAddr: freeAddr(t)}
	node := serve(t, o)
	var fixed atomic.Bool
	var mu sync.Mutex
	replayed := map[string]int{}
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !fixed.Load() {
			w.WriteHeader(http.StatusBadRequest) // permanent: straight to the dead-letter queue
			return
		}
		time.Sleep(3 * time.Millisecond)
		mu.Lock()
		replayed[string(b)]++
		mu.Unlock()
	}))
	t.Cleanup(ep.Close)
	distinct := func() int { mu.Lock(); defer mu.Unlock(); return len(replayed) }

	cli(t, o.httpAddr, handlerSpec("doomed", "doom", ep.URL, 16), "handler", "apply", "-f", "-")
	const n = 3000
	cli(t, o.httpAddr, lines("bad-", 0, n, false), "publish", "doom")
	testkit.Eventually(t, 60*time.Second, func() bool {
		return getHandler(t, o.httpAddr, "doomed").Status.DeadLettered >= 600
	}, "600 dead letters before the kill")
	node.kill()
	node = serve(t, o)
	testkit.Eventually(t, 120*time.Second, func() bool {
		h := getHandler(t, o.httpAddr, "doomed")
		return h.Status != nil && h.Status.Lag == 0
	}, "the node to catch up after the restart")
	sources, _, dupRecords := deadLetters(t, o.httpAddr, "doomed")
	entries := 0
	for _, c := range sources {
		entries += c
	}
	if len(sources) != n {
		t.Fatalf("%d distinct messages dead-lettered, want %d: some were lost", len(sources), n)
	}
	// One entry per source message: the records the kill duplicated (a
	// dead-letter write before the offset commit, written again after
	// the restart) are folded into their entry.
	dlqDups := entries - n
	fmt.Printf("kill -9 while dead-lettering: %d of %d messages in the dead-letter queue, %d duplicate entries (%d duplicate records folded)\n", len(sources), n, dlqDups, dupRecords)
	if dlqDups != 0 {
		t.Fatalf("%d duplicate dead-letter entries after one kill -9, want 0", dlqDups)
	}
	if dupRecords > maxDupsPerKill {
		t.Fatalf("%d duplicate dead-letter records after one kill -9, more than the bound of %d", dupRecords, maxDupsPerKill)
	}

	// Replay all of them to a fixed endpoint, as a job, and kill the node
	// midway through the deliveries.
	fixed.Store(true)
	var job struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Done  int    `json:"done"`
		Total int    `json:"total"`
		Error string `json:"error"`
	}
	if code := apiJSON(t, "POST", "http://"+o.httpAddr+"/v1/handlers/doomed/dlq/replay", `{"all":true}`, &job); code != 202 || job.ID == "" {
		t.Fatalf("replay: HTTP %d, job %+v, want 202 and a job", code, job)
	}
	testkit.Eventually(t, 120*time.Second, func() bool {
		if code := apiJSON(t, "GET", "http://"+o.httpAddr+"/v1/handlers/doomed/dlq/jobs/"+job.ID, "", &job); code != 200 {
			t.Fatalf("replay job: HTTP %d", code)
		}
		return job.State != "running"
	}, "the replay job to end")
	if job.State != "succeeded" || job.Done != n || job.Total != n {
		t.Fatalf("replay job: %+v, want succeeded with %d of %d", job, n, n)
	}
	testkit.Eventually(t, 60*time.Second, func() bool { return distinct() >= 800 }, "800 replayed deliveries before the kill")
	node.kill()
	before := distinct()
	serve(t, o)
	testkit.Eventually(t, 120*time.Second, func() bool { return distinct() == n }, "all %d replayed messages after the restart", n)
	_, states, _ := deadLetters(t, o.httpAddr, "doomed")
	if states["dead"] != 0 || states["replayed"] != n {
		t.Fatalf("entry states after replay: %v", states)
	}
	mu.Lock()
	dups := 0
	for _, c := range replayed {
		dups += c - 1
	}
	mu.Unlock()
	fmt.Printf("kill -9 mid-replay: %d of %d replayed messages delivered, %d duplicates (%d delivered before the kill)\n", n, n, dups, before)
	// Each entry is replayed once, duplicate records or not; the kill adds
	// at most a commit interval's worth.
	if dups > maxDupsPerKill {
		t.Fatalf("%d duplicates after the replay and one kill -9, more than the bound of %d", dups, maxDupsPerKill)
	}
}
