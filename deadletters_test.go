package sluice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/cli"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

// dlqJob posts a replay or purge (action) that runs as a job, checks the
// 202 and the Location it names, and follows the job until it is over.
func (n *node) dlqJob(t *testing.T, name, action, query, body string) api.DeadLetterJob {
	t.Helper()
	req, err := http.NewRequest("POST", n.base+"/v1/handlers/"+name+"/dlq/"+action+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var job api.DeadLetterJob
	err = json.NewDecoder(resp.Body).Decode(&job)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 202 || err != nil || job.ID == "" || loc != "/v1/handlers/"+name+"/dlq/jobs/"+job.ID {
		t.Fatalf("%s %s: HTTP %d, job %+v (%v), Location %q; want 202 and a job", action, body, resp.StatusCode, job, err, loc)
	}
	testkit.Eventually(t, 60*time.Second, func() bool {
		code, b := n.do(t, "GET", loc, "")
		if code != 200 || json.Unmarshal(b, &job) != nil {
			t.Fatalf("job %s: HTTP %d %s", loc, code, b)
		}
		return job.State != api.JobRunning
	}, "the %s job to end", action)
	return job
}

// A replay of all runs as a job: 202 with it, then its state and counts;
// the entries it did are marked as in a request.
func TestReplayAllRunsAsAJob(t *testing.T) {
	n := startNode(t)
	var fixed = make(chan struct{})
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) {
		select {
		case <-fixed:
			return 200, nil, 0
		default:
			return 400, nil, 0
		}
	})
	n.apply(t, fmt.Sprintf(`{"name":"jobbed","topic":"jt","http":{"url":%q}}`, ep.URL))
	n.publishN(t, "jt", "j", 0, 1200, 13)
	testkit.Eventually(t, 60*time.Second, func() bool { return n.dlq(t, "jobbed", "?limit=1").Total == 1200 }, "1200 dead letters")
	close(fixed)
	// Purge 100 of them by id: up to 500 ids are done in the request.
	p := n.dlq(t, "jobbed", "?limit=100")
	ids := make([]string, len(p.Entries))
	for i, e := range p.Entries {
		ids[i] = `"` + e.ID + `"`
	}
	if code, body := n.do(t, "POST", "/v1/handlers/jobbed/dlq/purge", `{"ids":[`+strings.Join(ids, ",")+`]}`); code != 200 || !strings.Contains(string(body), `"discarded": 100`) {
		t.Fatalf("purge 100 by id: %d %s", code, body)
	}
	// The CLI starts the job and follows it, with its progress on stderr.
	var out, errOut bytes.Buffer
	env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	if rc := cli.Run(context.Background(), []string{"dlq", "replay", "jobbed", "--all", "--server", n.base}, env); rc != 0 {
		t.Fatalf("sluice dlq replay --all: exit %d: %s", rc, errOut.String())
	}
	if out.String() != "replayed 1100 entries of jobbed\n" || !strings.Contains(errOut.String(), "replay: 1100 of 1100 entries\n") {
		t.Fatalf("sluice dlq replay --all: stdout %q, stderr %q", out.String(), errOut.String())
	}
	code, body := n.do(t, "GET", "/v1/handlers/jobbed/dlq/jobs", "")
	var jobs struct {
		Jobs []api.DeadLetterJob `json:"jobs"`
	}
	if code != 200 || json.Unmarshal(body, &jobs) != nil || len(jobs.Jobs) != 1 {
		t.Fatalf("jobs: %d %s", code, body)
	}
	job := jobs.Jobs[0]
	fmt.Printf("replay job: state %s, %d of %d entries, kind %s, topic %s; the CLI printed %q\n", job.State, job.Done, job.Total, job.Kind, job.Topic, errOut.String())
	if job.State != api.JobSucceeded || job.Done != 1100 || job.Total != 1100 || job.Kind != "replay" || job.Topic != "jobbed.dlq" || job.Error != "" || job.FinishedAt.IsZero() {
		t.Fatalf("replay job: %+v", job)
	}
	testkit.Eventually(t, 60*time.Second, func() bool { return ep.okCount() == 1100 }, "1100 replayed deliveries")
	if d := n.dlq(t, "jobbed", "?state=dead"); d.Total != 0 {
		t.Fatalf("%d dead after the job", d.Total)
	}
	if r := n.dlq(t, "jobbed", "?state=replayed"); r.Total != 1100 {
		t.Fatalf("%d replayed after the job", r.Total)
	}
	// An unknown job is 404.
	if code, body := n.do(t, "GET", "/v1/handlers/jobbed/dlq/jobs/nope", ""); code != 404 {
		t.Fatalf("unknown job: %d %s", code, body)
	}
	// Purge of all: nothing dead is left, so a job of 0.
	if job := n.dlqJob(t, "jobbed", "purge", "", `{"all":true}`); job.State != api.JobSucceeded || job.Done != 0 || job.Total != 0 {
		t.Fatalf("purge job: %+v", job)
	}
	// More than 500 ids are a job too; one that is not an id is refused
	// before it starts.
	many := n.dlq(t, "jobbed", "?state=replayed&limit=600")
	ids = make([]string, len(many.Entries))
	for i, e := range many.Entries {
		ids[i] = `"` + e.ID + `"`
	}
	if code, body := n.do(t, "POST", "/v1/handlers/jobbed/dlq/purge", `{"ids":[`+strings.Join(ids, ",")+`,"x"]}`); code != 404 || !strings.Contains(string(body), "not an entry id") {
		t.Fatalf("purge of 601 ids, one not an id: %d %s", code, body)
	}
	if job := n.dlqJob(t, "jobbed", "purge", "", `{"ids":[`+strings.Join(ids, ",")+`]}`); job.State != api.JobSucceeded || job.Done != 600 || job.Total != 600 {
		t.Fatalf("purge job of 600 ids: %+v", job)
	}
	if d := n.dlq(t, "jobbed", "?state=discarded&limit=1"); d.Total != 700 {
		t.Fatalf("%d discarded, want 700", d.Total)
	}
}

// Deleting a handler leaves its dead letters reachable by naming their
// topic: listed, shown and purged with ?topic=, and replayed into a handler
// re-created with the name, through its own replay topic. Only a
// dead-letter topic of that handler can be named.
func TestDeadLettersOfADeletedHandler(t *testing.T) {
	n := startNode(t)
	var fixed = make(chan struct{})
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) {
		select {
		case <-fixed:
			return 200, nil, 0
		default:
			return 400, nil, 0
		}
	})
	bystander := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 200, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"phoenix","topic":"ashes","http":{"url":%q},"deadLetter":{"topic":"phoenix-graveyard"}}`, ep.URL))
	n.apply(t, fmt.Sprintf(`{"name":"bystander","topic":"ashes","http":{"url":%q}}`, bystander.URL))
	n.publishN(t, "ashes", "p", 0, 5, 5)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "phoenix", "").Total == 5 }, "5 dead letters")
	testkit.Eventually(t, 30*time.Second, func() bool { return bystander.okCount() == 5 }, "the bystander got 5")
	if code, body := n.do(t, "DELETE", "/v1/handlers/phoenix", ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { c, _ := n.do(t, "GET", "/v1/handlers/phoenix", ""); return c == 404 }, "the handler gone")

	// Without the topic: 404 that says how to reach them.
	if code, body := n.do(t, "GET", "/v1/handlers/phoenix/dlq", ""); code != 404 || !strings.Contains(string(body), "?topic=") {
		t.Fatalf("list of a deleted handler: %d %s", code, body)
	}
	code, body := n.do(t, "GET", "/v1/handlers/phoenix/dlq/topics", "")
	var ts api.DeadLetterTopics
	if code != 200 || json.Unmarshal(body, &ts) != nil || ts.Current != "" || len(ts.Retired) != 1 || ts.Retired[0].Topic != "phoenix-graveyard" {
		t.Fatalf("topics of a deleted handler: %d %s", code, body)
	}
	p := n.dlq(t, "phoenix", "?topic=phoenix-graveyard")
	if p.Total != 5 || p.Entries[0].State != "dead" || p.Entries[0].Topic != "phoenix-graveyard" {
		t.Fatalf("list with ?topic=: %+v", p)
	}
	id := p.Entries[0].ID
	if code, body := n.do(t, "GET", "/v1/handlers/phoenix/dlq/"+id+"?topic=phoenix-graveyard", ""); code != 200 || !strings.Contains(string(body), `"value": "p`) {
		t.Fatalf("show with ?topic=: %d %s", code, body)
	}
	// Nothing else can be read so: not the source topic, not another
	// handler's dead-letter topic, not an internal topic, not a bad name.
	for _, c := range []struct {
		query string
		msg   string
	}{
		{"?topic=ashes", "not a dead-letter topic of handler"},
		{"?topic=bystander.dlq", "not a dead-letter topic of handler"},
		{"?topic=__sluice_dlq_state", "internal topic"},
		{"?topic=__consumer_offsets", "internal topic"},
		{"?topic=a%2Fb", "not a valid topic name"},
	} {
		code, body := n.do(t, "GET", "/v1/handlers/phoenix/dlq"+c.query, "")
		var e api.Error
		if code != 400 || json.Unmarshal(body, &e) != nil || e.Field != "topic" || !strings.Contains(e.Error, c.msg) {
			t.Fatalf("GET dlq%s: %d %s; want 400 on topic containing %q", c.query, code, body, c.msg)
		}
	}
	// A replay needs the handler: 404 until it is re-created.
	if code, body := n.do(t, "POST", "/v1/handlers/phoenix/dlq/replay?topic=phoenix-graveyard", `{"ids":["`+id+`"]}`); code != 404 || !strings.Contains(string(body), "re-create") {
		t.Fatalf("replay into a deleted handler: %d %s", code, body)
	}
	// Purge one while deleted.
	if code, body := n.do(t, "DELETE", "/v1/handlers/phoenix/dlq/"+id+"?topic=phoenix-graveyard", ""); code != 200 {
		t.Fatalf("discard with ?topic=: %d %s", code, body)
	}
	// Re-created with another dead-letter topic: the old entries replay
	// into it, through its replay topic, and reach it alone.
	close(fixed)
	n.apply(t, fmt.Sprintf(`{"name":"phoenix","topic":"ashes","http":{"url":%q},"deadLetter":{"topic":"phoenix-graveyard-2"}}`, ep.URL))
	if p := n.dlq(t, "phoenix", ""); p.Total != 0 {
		t.Fatalf("the new dead-letter topic has %d entries", p.Total)
	}
	job := n.dlqJob(t, "phoenix", "replay", "?topic=phoenix-graveyard", `{"all":true}`)
	fmt.Printf("deleted handler's dead letters: 5 listed, 1 purged, replay job into the re-created handler %s, %d of %d\n", job.State, job.Done, job.Total)
	if job.State != api.JobSucceeded || job.Done != 4 || job.Topic != "phoenix-graveyard" {
		t.Fatalf("replay job: %+v", job)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return ep.okCount() == 4 }, "4 replayed deliveries")
	testkit.Eventually(t, 30*time.Second, func() bool { return n.handler(t, "phoenix").Status.Replayed == 4 }, "the re-created handler counts 4 replayed")
	time.Sleep(time.Second)
	bystander.mu.Lock()
	total := 0
	for _, c := range bystander.attempts {
		total += c
	}
	bystander.mu.Unlock()
	if total != 5 {
		t.Fatalf("the bystander received %d requests, want 5: the replay reached it", total)
	}
	if p := n.dlq(t, "phoenix", "?topic=phoenix-graveyard&state=replayed"); p.Total != 4 {
		t.Fatalf("%d replayed in the old topic", p.Total)
	}
	if p := n.dlq(t, "phoenix", "?topic=phoenix-graveyard&state=discarded"); p.Total != 1 || p.Entries[0].ID != id {
		t.Fatalf("discarded in the old topic: %+v", p)
	}
	// The CLI names the topics and reaches the old one.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"dlq", "topics", "phoenix"}, []string{"phoenix-graveyard-2 current -", "phoenix-graveyard retired 20"}},
		{[]string{"dlq", "list", "phoenix", "--topic", "phoenix-graveyard", "--state", "replayed"}, []string{"4 of 4 entries"}},
		{[]string{"dlq", "jobs", "phoenix"}, []string{job.ID, "succeeded", "phoenix-graveyard"}},
	} {
		var out, errOut bytes.Buffer
		env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
		if rc := cli.Run(context.Background(), append(c.args, "--server", n.base), env); rc != 0 {
			t.Fatalf("sluice %v: exit %d: %s", c.args, rc, errOut.String())
		}
		got := strings.Join(strings.Fields(strings.ReplaceAll(out.String(), "\n", " | ")), " ") // columns as single spaces
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Fatalf("sluice %v: %q lacks %q", c.args, out.String(), w)
			}
		}
	}
}

// Changing deadLetter.topic keeps the entries of the old topic reachable
// and their states apart from the new topic's.
func TestChangedDeadLetterTopicKeepsStatesApart(t *testing.T) {
	n := startNode(t)
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 400, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"mover","topic":"mt","http":{"url":%q},"deadLetter":{"topic":"mover-a"}}`, ep.URL))
	n.publishN(t, "mt", "m", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "mover", "").Total == 1 }, "one dead letter")
	first := n.dlq(t, "mover", "").Entries[0]
	if code, body := n.do(t, "DELETE", "/v1/handlers/mover/dlq/"+first.ID, ""); code != 200 {
		t.Fatalf("discard: %d %s", code, body)
	}
	n.apply(t, fmt.Sprintf(`{"name":"mover","topic":"mt","http":{"url":%q},"deadLetter":{"topic":"mover-b"}}`, ep.URL))
	n.publishN(t, "mt", "m", 1, 2, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "mover", "").Total == 1 }, "one dead letter in the new topic")
	second := n.dlq(t, "mover", "").Entries[0]
	if second.ID != first.ID {
		t.Fatalf("the new failure is at %s, not at %s: the scenario needs the same coordinates", second.ID, first.ID)
	}
	if second.State != "dead" {
		t.Fatalf("the new failure at %s of mover-b is %s, want dead", second.ID, second.State)
	}
	if old := n.dlq(t, "mover", "?topic=mover-a"); old.Total != 1 || old.Entries[0].State != "discarded" {
		t.Fatalf("the old topic: %+v", old)
	}
	code, body := n.do(t, "GET", "/v1/handlers/mover/dlq/topics", "")
	if code != 200 || !strings.Contains(string(body), `"current": "mover-b"`) || !strings.Contains(string(body), `"topic": "mover-a"`) {
		t.Fatalf("topics: %d %s", code, body)
	}
}

// One replay or purge job per handler runs at a time across the fleet: a
// job another node runs (its row fresh in the state topic) makes a second
// 409, naming it; a synchronous replay by id is not a job and goes on.
func TestASecondDeadLetterJobIsAConflict(t *testing.T) {
	n := startNode(t)
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 400, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"busy","topic":"bt","http":{"url":%q}}`, ep.URL))
	n.publishN(t, "bt", "b", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "busy", "").Total == 1 }, "one dead letter")
	now := time.Now().UTC().Format(time.RFC3339Nano)
	row := fmt.Sprintf(`{"id":"aaaabbbbccccdddd","handler":"busy","kind":"replay","topic":"busy.dlq","state":"running","done":500,"total":9000,"node":"node-elsewhere:8080","startedAt":%q,"updatedAt":%q}`, now, now)
	tc := testkit.Topics(t, n.app.Brokers())
	if _, err := tc.Produce(context.Background(), "__sluice_dlq_state", []topics.Record{{Key: []byte("job:busy/aaaabbbbccccdddd"), Value: []byte(row), Partition: 0}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		c, _ := n.do(t, "GET", "/v1/handlers/busy/dlq/jobs/aaaabbbbccccdddd", "")
		return c == 200
	}, "the other node's job to be read")
	for _, action := range []string{"replay", "purge"} {
		code, body := n.do(t, "POST", "/v1/handlers/busy/dlq/"+action, `{"all":true}`)
		if code != 409 || !strings.Contains(string(body), "node-elsewhere:8080") || !strings.Contains(string(body), "500 of 9000") {
			t.Fatalf("%s of all while a job runs: %d %s; want 409 naming the job", action, code, body)
		}
	}
	id := n.dlq(t, "busy", "").Entries[0].ID
	if code, body := n.do(t, "POST", "/v1/handlers/busy/dlq/purge", `{"ids":["`+id+`"]}`); code != 200 {
		t.Fatalf("purge by id while a job runs: %d %s", code, body)
	}
}

// A Go handler whose compiled spec moves its dead-letter topic records the
// topic it leaves when the node starts with the new spec, as an apply
// through the API does.
func TestGoHandlerThatMovesItsDeadLetterTopicRetiresTheOld(t *testing.T) {
	dir := t.TempDir()
	opts := []sluice.Option{sluice.WithDataDir(dir), sluice.WithKafkaAddr("127.0.0.1:0"), sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger())}
	start := func(dlqTopic string) *node {
		app, err := sluice.New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		spec := sluice.Spec{Name: "mover-go", Topic: "mg", DeadLetter: &handlers.DeadLetterSpec{Topic: dlqTopic}}
		if err := app.Handle(spec, func(context.Context, *sluice.Message) error { return nil }); err != nil {
			t.Fatal(err)
		}
		return runNode(t, app)
	}
	n := start("mover-go-a")
	testkit.Eventually(t, 20*time.Second, func() bool { c, _ := n.do(t, "GET", "/v1/handlers/mover-go", ""); return c == 200 }, "the Go handler registered")
	n.stop()
	n = start("mover-go-b")
	testkit.Eventually(t, 20*time.Second, func() bool {
		_, body := n.do(t, "GET", "/v1/handlers/mover-go/dlq/topics", "")
		var ts api.DeadLetterTopics
		return json.Unmarshal(body, &ts) == nil && ts.Current == "mover-go-b" && len(ts.Retired) == 1 && ts.Retired[0].Topic == "mover-go-a"
	}, "mover-go-a retired, mover-go-b current")
}

// A replayed message that fails again is a new entry, not a duplicate of
// the one replayed: it keeps its source id, and carries the entry it
// replays through the consumer to its dead letter.
func TestAReplayThatFailsAgainIsANewEntry(t *testing.T) {
	n := startNode(t)
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 400, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"stubborn","topic":"st","http":{"url":%q}}`, ep.URL))
	n.publishN(t, "st", "s", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "stubborn", "").Total == 1 }, "one dead letter")
	first := n.dlq(t, "stubborn", "").Entries[0]
	if code, body := n.do(t, "POST", "/v1/handlers/stubborn/dlq/replay", `{"ids":["`+first.ID+`"]}`); code != 200 {
		t.Fatalf("replay: %d %s", code, body)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "stubborn", "").Total == 2 }, "the replay's failure as a second entry")
	p := n.dlq(t, "stubborn", "")
	again := p.Entries[0]
	fmt.Printf("a replay that failed again: %d entries, %d duplicate records; the new one is %s, replay of %s\n", p.Total, p.DuplicateRecords, again.State, again.ReplayOf)
	if p.DuplicateRecords != 0 || again.State != "dead" || again.ReplayOf != "stubborn.dlq/"+first.ID || again.SourceOffset != first.SourceOffset || again.SourceTopic != "st" ||
		p.Entries[1].ID != first.ID || p.Entries[1].State != "replayed" {
		t.Fatalf("entries after the replay failed: %+v", p.Entries)
	}
}
