package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dlq"
	"github.com/sluicehq/sluice/internal/testkit"
)

// publishN publishes values prefix0..prefixN-1 (key k<i%keys>) in batches.
func (n *node) publishN(t *testing.T, topic, prefix string, from, to, keys int) {
	t.Helper()
	for start := from; start < to; start += 1000 {
		var msgs []string
		for i := start; i < min(to, start+1000); i++ {
			msgs = append(msgs, fmt.Sprintf(`{"key":"k%d","value":"%s%d"}`, i%keys, prefix, i))
		}
		if code, body := n.do(t, "POST", "/v1/topics/"+topic+"/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
}

func (n *node) apply(t *testing.T, spec string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(spec), &m); err != nil {
		t.Fatalf("bad test spec: %v", err)
	}
	code, body := n.do(t, "PUT", "/v1/handlers/"+m["name"].(string), spec)
	if code != 200 && code != 201 {
		t.Fatalf("apply: %d %s", code, body)
	}
}

func (n *node) handler(t *testing.T, name string) api.Handler {
	t.Helper()
	_, body := n.do(t, "GET", "/v1/handlers/"+name, "")
	var h api.Handler
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("handler %s: %s", name, body)
	}
	return h
}

func (n *node) dlq(t *testing.T, name, query string) dlq.Page {
	t.Helper()
	code, body := n.do(t, "GET", "/v1/handlers/"+name+"/dlq"+query, "")
	if code != 200 {
		t.Fatalf("dlq list: %d %s", code, body)
	}
	var p dlq.Page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("dlq page: %s", body)
	}
	return p
}

// scripted is an endpoint whose answer per request is decided by a function
// of the body and the per-body attempt number.
type scripted struct {
	*httptest.Server
	mu       sync.Mutex
	attempts map[string]int
	times    map[string][]time.Time
	ok       map[string]int
	answer   func(body string, attempt int) (status int, header http.Header, delay time.Duration)
}

func newScripted(t *testing.T, answer func(body string, attempt int) (int, http.Header, time.Duration)) *scripted {
	s := &scripted{attempts: map[string]int{}, times: map[string][]time.Time{}, ok: map[string]int{}, answer: answer}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body := string(b)
		s.mu.Lock()
		s.attempts[body]++
		a := s.attempts[body]
		s.times[body] = append(s.times[body], time.Now())
		s.mu.Unlock()
		status, h, delay := s.answer(body, a)
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "answer %d for %s", status, body)
		if status < 300 {
			s.mu.Lock()
			s.ok[body]++
			s.mu.Unlock()
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) okCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ok)
}

func (s *scripted) attemptsOf(body string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[body]
}

func TestPoisonMessageIsDeadLetteredAfterMaxAttemptsAndThePartitionFlows(t *testing.T) {
	n := startNode(t)
	ep := newScripted(t, func(body string, _ int) (int, http.Header, time.Duration) {
		if body == "poison" {
			return 500, nil, 0
		}
		return 200, nil, 0
	})
	n.apply(t, fmt.Sprintf(`{"name":"eater","topic":"food","http":{"url":%q},"concurrency":64,
		"retry":{"maxAttempts":4,"initialBackoff":"10ms","maxBackoff":"50ms"}}`, ep.URL))
	const good = 10000
	n.publishN(t, "food", "good-", 0, good/2, 500)
	code, body := n.do(t, "POST", "/v1/topics/food/messages", `{"messages":[{"key":"k7","value":"poison"}]}`)
	if code != 200 {
		t.Fatalf("publish poison: %d %s", code, body)
	}
	var pr api.PublishResponse
	_ = json.Unmarshal(body, &pr)
	n.publishN(t, "food", "good-", good/2, good, 500)

	testkit.Eventually(t, 60*time.Second, func() bool { return ep.okCount() == good }, "%d good messages", good)
	testkit.Eventually(t, 20*time.Second, func() bool { return n.dlq(t, "eater", "").Total == 1 }, "one dead letter")
	page := n.dlq(t, "eater", "")
	e := page.Entries[0]
	if e.Attempts != 4 || e.Status != 500 || e.SourceTopic != "food" || e.SourcePartition != pr.Results[0].Partition ||
		e.SourceOffset != pr.Results[0].Offset || e.Key != "k7" || e.State != dlq.StateDead || !strings.Contains(e.Error, "HTTP 500") {
		t.Fatalf("dead letter %+v, want the poison message after 4 attempts", e)
	}
	if got := ep.attemptsOf("poison"); got != 4 {
		t.Fatalf("poison was attempted %d times, want exactly 4", got)
	}
	h := n.handler(t, "eater")
	if h.Status.DeadLettered != 1 || h.Status.Succeeded != good {
		t.Fatalf("status: dead-lettered %d succeeded %d", h.Status.DeadLettered, h.Status.Succeeded)
	}
	// Everything was committed: the poison did not hold its partition.
	testkit.Eventually(t, 10*time.Second, func() bool { return n.handler(t, "eater").Status.Lag == 0 }, "lag 0")
	full, raw := n.do(t, "GET", "/v1/handlers/eater/dlq/"+e.ID, "")
	var shown dlq.Entry
	if err := json.Unmarshal(raw, &shown); err != nil || full != 200 || shown.Value == nil || *shown.Value != "poison" {
		t.Fatalf("show entry: %d %s", full, raw)
	}
}

func TestOutageOpensTheBreakerAndDeadLettersNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20-second outage")
	}
	n := startNode(t)
	var down atomic.Bool
	down.Store(true)
	var downHits atomic.Int64
	ep := newScripted(t, func(body string, _ int) (int, http.Header, time.Duration) {
		if down.Load() {
			downHits.Add(1)
			return 503, nil, 0
		}
		return 200, nil, 0
	})
	n.apply(t, fmt.Sprintf(`{"name":"fragile","topic":"outage","http":{"url":%q},"concurrency":16,
		"retry":{"maxAttempts":3,"initialBackoff":"20ms","maxBackoff":"100ms"},
		"breaker":{"minRequests":10,"failureRatio":0.5,"openFor":"2s"}}`, ep.URL))
	outageEnds := time.Now().Add(20 * time.Second)
	sent := 0
	sawOpen := false
	for time.Now().Before(outageEnds) { // messages keep arriving during the outage
		n.publishN(t, "outage", "m-", sent, sent+25, 50)
		sent += 25
		if n.handler(t, "fragile").Status.Breaker.State == "open" {
			sawOpen = true
		}
		time.Sleep(250 * time.Millisecond)
	}
	down.Store(false)
	hitsDuringOutage := downHits.Load()
	testkit.Eventually(t, 60*time.Second, func() bool { return ep.okCount() == sent }, "all %d messages after recovery", sent)
	h := n.handler(t, "fragile")
	if !sawOpen || h.Status.Breaker.Opened == 0 {
		t.Fatalf("the breaker never opened: %+v", h.Status.Breaker)
	}
	if h.Status.Breaker.State != "closed" {
		t.Fatalf("breaker %s after recovery, want closed", h.Status.Breaker.State)
	}
	if p := n.dlq(t, "fragile", ""); p.Total != 0 || h.Status.DeadLettered != 0 {
		t.Fatalf("the outage dead-lettered %d messages", p.Total)
	}
	// While open the endpoint saw probes, not the stream: far fewer
	// requests than messages times attempts.
	t.Logf("outage: %d messages, %d failed requests during 20s, breaker opened %d times", sent, hitsDuringOutage, h.Status.Breaker.Opened)
	if hitsDuringOutage >= int64(sent) {
		t.Fatalf("%d requests hit the endpoint during the outage for %d messages: consumption did not pause", hitsDuringOutage, sent)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	n := startNode(t)
	ep := newScripted(t, func(body string, attempt int) (int, http.Header, time.Duration) {
		if attempt == 1 {
			return 429, http.Header{"Retry-After": {"2"}}, 0
		}
		return 200, nil, 0
	})
	n.apply(t, fmt.Sprintf(`{"name":"polite","topic":"throttled","http":{"url":%q},"retry":{"initialBackoff":"10ms"}}`, ep.URL))
	n.publishN(t, "throttled", "slow-", 0, 1, 1)
	testkit.Eventually(t, 20*time.Second, func() bool { return ep.okCount() == 1 }, "the message after the 429")
	ep.mu.Lock()
	ts := ep.times["slow-0"]
	ep.mu.Unlock()
	if len(ts) != 2 {
		t.Fatalf("%d attempts, want 2", len(ts))
	}
	if gap := ts[1].Sub(ts[0]); gap < 2*time.Second {
		t.Fatalf("second attempt came %s after a 429 with Retry-After: 2", gap)
	}
}

func closedPortURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/hook"
}

func TestFailuresAreRetriedThenDeadLetteredWithTheirError(t *testing.T) {
	app, err := sluice.New(sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	var panics, perms atomic.Int64
	retry := &sluice.RetrySpec{MaxAttempts: 3, InitialBackoff: sluice.Duration(10 * time.Millisecond), MaxBackoff: sluice.Duration(20 * time.Millisecond)}
	if err := app.Handle(sluice.Spec{Name: "panicky", Topic: "gofail", Retry: retry}, func(ctx context.Context, m *sluice.Message) error {
		panics.Add(1)
		panic("boom")
	}); err != nil {
		t.Fatal(err)
	}
	if err := app.Handle(sluice.Spec{Name: "strict", Topic: "gofail", Retry: retry}, func(ctx context.Context, m *sluice.Message) error {
		perms.Add(1)
		return sluice.Permanent(errors.New("invalid order"))
	}); err != nil {
		t.Fatal(err)
	}
	n := runNode(t, app)
	slow := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 200, nil, 2 * time.Second })
	bad := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 422, nil, 0 })
	noBreaker := `"breaker":{"disabled":true},"retry":{"maxAttempts":2,"initialBackoff":"10ms","maxBackoff":"20ms"}`
	n.apply(t, fmt.Sprintf(`{"name":"sleepy","topic":"failing","timeout":"200ms","http":{"url":%q},%s}`, slow.URL, noBreaker))
	n.apply(t, fmt.Sprintf(`{"name":"nobody","topic":"failing","http":{"url":%q},%s}`, closedPortURL(t), noBreaker))
	n.apply(t, fmt.Sprintf(`{"name":"picky","topic":"failing","http":{"url":%q},%s}`, bad.URL, noBreaker))
	n.publishN(t, "failing", "f-", 0, 1, 1)
	n.publishN(t, "gofail", "g-", 0, 1, 1)

	cases := []struct {
		handler  string
		attempts int
		status   int
		errText  string
	}{
		{"sleepy", 2, 0, "timed out after 200ms"},
		{"nobody", 2, 0, "connection refused"},
		{"picky", 1, 422, "HTTP 422 Unprocessable Entity: answer 422 for f-0"},
		{"panicky", 3, 0, "handler panicked: boom"},
		{"strict", 1, 0, "invalid order"},
	}
	for _, c := range cases {
		t.Run(c.handler, func(t *testing.T) {
			testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, c.handler, "").Total == 1 }, "a dead letter for %s", c.handler)
			e := n.dlq(t, c.handler, "").Entries[0]
			if e.Attempts != c.attempts || e.Status != c.status || !strings.Contains(e.Error, c.errText) {
				t.Fatalf("entry %+v, want %d attempts, status %d, error containing %q", e, c.attempts, c.status, c.errText)
			}
			if !e.LastFailure.After(e.FirstFailure) && c.attempts > 1 {
				t.Fatalf("first failure %s, last %s", e.FirstFailure, e.LastFailure)
			}
		})
	}
	if panics.Load() != 3 || perms.Load() != 1 {
		t.Fatalf("Go handler calls: panicky %d (want 3), strict %d (want 1)", panics.Load(), perms.Load())
	}
	if got := slow.attemptsOf("f-0"); got != 2 {
		t.Fatalf("timeout handler attempted %d times, want 2", got)
	}
	if got := bad.attemptsOf("f-0"); got != 1 {
		t.Fatalf("a 422 was retried: %d attempts", got)
	}
	// The Go handler's failure filter by error text.
	if p := n.dlq(t, "panicky", "?error=BOOM"); p.Total != 1 {
		t.Fatalf("error filter found %d", p.Total)
	}
	if p := n.dlq(t, "panicky", "?error=nothing-like-this"); p.Total != 0 {
		t.Fatalf("error filter found %d for a text that is not there", p.Total)
	}
}

func TestReplayAndPurgeReachOnlyTheirHandler(t *testing.T) {
	n := startNode(t)
	var broken atomic.Bool
	broken.Store(true)
	fixed := newScripted(t, func(string, int) (int, http.Header, time.Duration) {
		if broken.Load() {
			return 400, nil, 0
		}
		return 200, nil, 0
	})
	bystander := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 200, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"mender","topic":"shared","http":{"url":%q}}`, fixed.URL))
	n.apply(t, fmt.Sprintf(`{"name":"bystander","topic":"shared","http":{"url":%q}}`, bystander.URL))
	n.publishN(t, "shared", "r-", 0, 30, 7)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "mender", "").Total == 30 }, "30 dead letters")
	testkit.Eventually(t, 30*time.Second, func() bool { return bystander.okCount() == 30 }, "bystander got 30")
	broken.Store(false)

	page := n.dlq(t, "mender", "?limit=10")
	if len(page.Entries) != 10 || page.Next != 10 || page.Total != 30 {
		t.Fatalf("paging: %d entries, next %d, total %d", len(page.Entries), page.Next, page.Total)
	}
	for i := 1; i < len(page.Entries); i++ {
		if page.Entries[i].LastFailure.After(page.Entries[i-1].LastFailure) {
			t.Fatalf("entries not newest first")
		}
	}
	// Replay two by id, then the rest of the dead ones, after purging five.
	ids := []string{page.Entries[0].ID, page.Entries[1].ID}
	code, body := n.do(t, "POST", "/v1/handlers/mender/dlq/replay", `{"ids":["`+ids[0]+`","`+ids[1]+`"]}`)
	if code != 200 || !strings.Contains(string(body), `"replayed": 2`) {
		t.Fatalf("replay ids: %d %s", code, body)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return fixed.okCount() == 2 }, "2 replayed deliveries")
	purge := page.Entries[2:7]
	var pids []string
	for _, e := range purge {
		pids = append(pids, `"`+e.ID+`"`)
	}
	if code, body := n.do(t, "POST", "/v1/handlers/mender/dlq/purge", `{"ids":[`+strings.Join(pids, ",")+`]}`); code != 200 || !strings.Contains(string(body), `"discarded": 5`) {
		t.Fatalf("purge: %d %s", code, body)
	}
	if code, body := n.do(t, "DELETE", "/v1/handlers/mender/dlq/"+page.Entries[7].ID, ""); code != 200 {
		t.Fatalf("delete entry: %d %s", code, body)
	}
	if job := n.dlqJob(t, "mender", "replay", "", `{"all":true}`); job.State != "succeeded" || job.Done != 22 || job.Total != 22 {
		t.Fatalf("replay all: %+v", job)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return fixed.okCount() == 24 }, "24 replayed deliveries")
	counts := map[string]int{}
	for _, e := range n.dlq(t, "mender", "?limit=100").Entries {
		counts[e.State]++
	}
	if counts[dlq.StateReplayed] != 24 || counts[dlq.StateDiscarded] != 6 || counts[dlq.StateDead] != 0 {
		t.Fatalf("states %v, want 24 replayed and 6 discarded", counts)
	}
	if p := n.dlq(t, "mender", "?state=discarded"); p.Total != 6 {
		t.Fatalf("state filter: %d discarded", p.Total)
	}
	// The bystander on the same topic saw the 30 originals, nothing more;
	// the mender saw each replayed message exactly once more.
	time.Sleep(time.Second)
	bystander.mu.Lock()
	total := 0
	for _, c := range bystander.attempts {
		total += c
	}
	bystander.mu.Unlock()
	if total != 30 {
		t.Fatalf("bystander received %d requests, want exactly 30", total)
	}
	fixed.mu.Lock()
	defer fixed.mu.Unlock()
	for body, c := range fixed.attempts {
		if _, ok := fixed.ok[body]; ok && c != 2 {
			t.Fatalf("%s: %d requests to the mender, want 2 (the failure and the replay)", body, c)
		}
	}
	_ = strconv.Itoa
}

func TestFailurePolicyBadInput(t *testing.T) {
	n := startNode(t)
	n.apply(t, `{"name":"solid","topic":"bi","http":{"url":"http://127.0.0.1:1/"}}`)
	_, before := n.do(t, "GET", "/v1/handlers/solid", "")
	cases := []struct {
		name, method, path, body string
		status                   int
		field, msg               string
	}{
		{"negative backoff", "PUT", "/v1/handlers/solid", `{"name":"solid","topic":"bi","http":{"url":"http://x/"},"retry":{"initialBackoff":"-1s"}}`, 400, "retry.initialBackoff", "must be between 1ms and 1h"},
		{"zero attempts", "PUT", "/v1/handlers/solid", `{"name":"solid","topic":"bi","http":{"url":"http://x/"},"retry":{"maxAttempts":0}}`, 400, "retry.maxAttempts", "must not be zero"},
		{"bad jitter", "PUT", "/v1/handlers/solid", `{"name":"solid","topic":"bi","http":{"url":"http://x/"},"retry":{"jitter":"some"}}`, 400, "retry.jitter", "full or none"},
		{"ratio over 1", "PUT", "/v1/handlers/solid", `{"name":"solid","topic":"bi","http":{"url":"http://x/"},"breaker":{"failureRatio":1.5}}`, 400, "breaker.failureRatio", "at most 1"},
		{"negative rate", "PUT", "/v1/handlers/solid", `{"name":"solid","topic":"bi","http":{"url":"http://x/"},"rateLimit":-5}`, 400, "rateLimit", "must be 0 (none) or between"},
		{"dlq is source", "PUT", "/v1/handlers/solid", `{"name":"solid","topic":"bi","http":{"url":"http://x/"},"deadLetter":{"topic":"bi"}}`, 400, "deadLetter.topic", "must differ"},
		{"replay unknown id", "POST", "/v1/handlers/solid/dlq/replay", `{"ids":["0-999"]}`, 404, "", `"0-999"`},
		{"replay malformed id", "POST", "/v1/handlers/solid/dlq/replay", `{"ids":["abc"]}`, 404, "", "not an entry id"},
		{"replay unknown handler", "POST", "/v1/handlers/ghost/dlq/replay", `{"all":true}`, 404, "", "not found"},
		{"replay nothing named", "POST", "/v1/handlers/solid/dlq/replay", `{}`, 400, "ids", "name the entries"},
		{"replay both", "POST", "/v1/handlers/solid/dlq/replay", `{"all":true,"ids":["0-1"]}`, 400, "ids", "name the entries"},
		{"list unknown handler", "GET", "/v1/handlers/ghost/dlq", "", 404, "", "not found"},
		{"list bad limit", "GET", "/v1/handlers/solid/dlq?limit=0", "", 400, "limit", "whole number"},
		{"list bad since", "GET", "/v1/handlers/solid/dlq?since=yesterday", "", 400, "since", "RFC 3339"},
		{"list bad state", "GET", "/v1/handlers/solid/dlq?state=zombie", "", 400, "state", "dead, replayed or discarded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := n.do(t, c.method, c.path, c.body)
			var e api.Error
			if code != c.status || json.Unmarshal(body, &e) != nil || e.Field != c.field || !strings.Contains(e.Error, c.msg) {
				t.Fatalf("got %d %s; want %d, field %q, error containing %q", code, body, c.status, c.field, c.msg)
			}
		})
	}
	_, after := n.do(t, "GET", "/v1/handlers/solid", "")
	var hb, ha api.Handler
	_ = json.Unmarshal(before, &hb)
	_ = json.Unmarshal(after, &ha)
	if hb.Version != ha.Version {
		t.Fatalf("bad input changed the handler: version %d -> %d", hb.Version, ha.Version)
	}
}

// In retry mode topics a failing message is parked on delay topics and
// retried from there, while the messages behind it flow; one that keeps
// failing is dead-lettered after every stage.
func TestRetryTopicsParkFailuresWithoutBlocking(t *testing.T) {
	n := startNode(t)
	ep := newScripted(t, func(body string, attempt int) (int, http.Header, time.Duration) {
		switch {
		case body == "flaky" && attempt <= 5: // fails two stages and the first try of the third
			return 500, nil, 0
		case body == "hopeless":
			return 500, nil, 0
		}
		return 200, nil, 0
	})
	n.apply(t, fmt.Sprintf(`{"name":"parker","topic":"parking","ordering":"none","concurrency":4,"http":{"url":%q},
		"breaker":{"disabled":true},
		"retry":{"mode":"topics","maxAttempts":2,"initialBackoff":"10ms","maxBackoff":"10ms","delays":["1s","2s"]}}`, ep.URL))
	if code, body := n.do(t, "POST", "/v1/topics/parking/messages", `{"messages":[{"key":"a","value":"flaky"},{"key":"b","value":"hopeless"}]}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	// Both fail their in-place attempts and are parked; a later message is
	// not held up behind them.
	testkit.Eventually(t, 20*time.Second, func() bool { return n.handler(t, "parker").Status.Parked >= 2 }, "two parked messages")
	n.publishN(t, "parking", "later-", 0, 20, 20)
	testkit.Eventually(t, 20*time.Second, func() bool { return ep.okCount() == 20 }, "the later messages")
	if ep.attemptsOf("flaky") >= 6 {
		t.Fatal("the later messages waited for the parked one")
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return ep.okCount() == 21 }, "the flaky message succeeds from the second delay topic")
	if got := ep.attemptsOf("flaky"); got != 6 {
		t.Fatalf("flaky attempted %d times, want 6 (2 in place, 2 after 1s, 2 after 2s)", got)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "parker", "").Total == 1 }, "hopeless dead-lettered")
	e := n.dlq(t, "parker", "").Entries[0]
	if e.Attempts != 6 || e.SourceTopic != "parking" || e.SourceOffset < 0 {
		t.Fatalf("entry %+v: want 6 attempts from topic parking", e)
	}
	ep.mu.Lock()
	ts := ep.times["flaky"]
	ep.mu.Unlock()
	if gap := ts[2].Sub(ts[1]); gap < time.Second {
		t.Fatalf("the first delay topic retried after %s, want at least 1s", gap)
	}
	if gap := ts[4].Sub(ts[3]); gap < 2*time.Second {
		t.Fatalf("the second delay topic retried after %s, want at least 2s", gap)
	}
}
