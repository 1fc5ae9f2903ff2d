package dlq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

// testQueue starts an embedded broker and a queue reading its states.
func testQueue(t *testing.T) (*Queue, *topics.Client, []string) {
	t.Helper()
	b, err := broker.Start(broker.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Logger: testkit.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	tc := testkit.Topics(t, b.Addrs())
	return runQueue(t, tc, b.Addrs()), tc, b.Addrs()
}

// runQueue is one node's queue over brokers.
func runQueue(t *testing.T, tc *topics.Client, brokers []string) *Queue {
	t.Helper()
	q := New(tc, brokers, nil, testkit.Logger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, 20*time.Second, func() bool { ok, _ := q.Loaded(); return ok }, "states loaded")
	return q
}

func failure(handler string, at time.Time) consumers.Failure {
	return consumers.Failure{Handler: handler, Err: errors.New("boom"), Attempts: 3, FirstFailure: at, LastFailure: at}
}

func msg(topic string, partition int, offset int64, value string, hs ...handlers.Header) *handlers.Message {
	return &handlers.Message{Topic: topic, Partition: partition, Offset: offset, Key: []byte("k"), Value: []byte(value), Headers: hs}
}

func listAll(t *testing.T, q *Queue, handler, topic string, f Filter) Page {
	t.Helper()
	f.Limit = 1000
	p, err := q.List(context.Background(), handler, topic, f)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The state of an entry is keyed by its dead-letter topic too: after
// deadLetter.topic changes, a new failure at the same partition and offset
// of the new topic is dead, not the discarded entry of the old topic, and a
// replay of all takes it. Keyed as before (<handler>/<partition>-<offset>)
// the new entry showed as discarded and the replay skipped it.
func TestStateOfAnEntryIsPerDeadLetterTopic(t *testing.T) {
	q, tc, _ := testQueue(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for _, topic := range []string{"old-dlq", "new-dlq"} {
		if err := tc.Create(ctx, topic, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.DeadLetter(ctx, "old-dlq", msg("src", 0, 7, "first"), failure("h", now)); err != nil {
		t.Fatal(err)
	}
	if n, err := q.Discard(ctx, "h", "old-dlq", Selection{All: true}, nil); err != nil || n != 1 {
		t.Fatalf("discard: %d %v", n, err)
	}
	// deadLetter.topic changed: the next failure lands at 0-0 of new-dlq.
	if err := q.DeadLetter(ctx, "new-dlq", msg("src", 0, 8, "second"), failure("h", now.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	p := listAll(t, q, "h", "new-dlq", Filter{})
	if p.Total != 1 || p.Entries[0].ID != "0-0" || p.Entries[0].State != StateDead || p.Entries[0].Topic != "new-dlq" {
		t.Fatalf("new topic: %+v", p)
	}
	if p := listAll(t, q, "h", "old-dlq", Filter{}); p.Total != 1 || p.Entries[0].ID != "0-0" || p.Entries[0].State != StateDiscarded {
		t.Fatalf("old topic: %+v", p)
	}
	var replayed []string
	n, err := q.ReplayVia(ctx, "h", "new-dlq", func(_ context.Context, recs []topics.Record) error {
		for _, r := range recs {
			replayed = append(replayed, string(r.Value))
		}
		return nil
	}, Selection{All: true}, nil)
	if err != nil || n != 1 || len(replayed) != 1 || replayed[0] != "second" {
		t.Fatalf("replay all of new-dlq: %d %v %q", n, err, replayed)
	}
	if p := listAll(t, q, "h", "old-dlq", Filter{}); p.Entries[0].State != StateDiscarded {
		t.Fatalf("the old entry changed with the replay of the new topic: %+v", p.Entries[0])
	}
	fmt.Printf("state per dead-letter topic: new-dlq 0-0 %s and replayed (%d), old-dlq 0-0 %s\n", StateDead, n, StateDiscarded)
}

// A state written by an earlier version names no topic: it applies to a
// record that failed before it was set, not to one that failed after.
func TestLegacyStateKeyAppliesOnlyToEarlierFailures(t *testing.T) {
	q, tc, _ := testQueue(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	for _, topic := range []string{"a-dlq", "b-dlq"} {
		if err := tc.Create(ctx, topic, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.DeadLetter(ctx, "a-dlq", msg("src", 0, 1, "a"), failure("h", t0)); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(ctx, "b-dlq", msg("src", 0, 2, "b"), failure("h", t0.Add(2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	// As an earlier version wrote it, an hour after the first failure.
	if _, err := q.states.Put(ctx, "h/0-0", []byte(`{"state":"discarded","at":"2026-01-01T11:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	a, b := listAll(t, q, "h", "a-dlq", Filter{}), listAll(t, q, "h", "b-dlq", Filter{})
	if a.Entries[0].State != StateDiscarded || b.Entries[0].State != StateDead {
		t.Fatalf("legacy key: a-dlq 0-0 %s (want discarded), b-dlq 0-0 %s (want dead)", a.Entries[0].State, b.Entries[0].State)
	}
}

// State keys are checked strictly: each part, and the state for the kind
// of key.
func TestCheckStateIsStrict(t *testing.T) {
	q := &Queue{log: testkit.Logger()}
	dead := []byte(`{"state":"dead","at":"2026-01-01T00:00:00Z"}`)
	retired := []byte(`{"state":"retired","at":"2026-01-01T00:00:00Z"}`)
	for _, c := range []struct {
		key   string
		value []byte
		ok    bool
	}{
		{"h/orders.dlq/0-12", dead, true},
		{"h/0-12", dead, true}, // legacy
		{"h/orders.dlq/0-12", nil, true},
		{"topic:h/orders.dlq", retired, true},
		{"h/orders.dlq/0-12", retired, false},
		{"topic:h/orders.dlq", dead, false},
		{"h/__sluice_dlq_state/0-1", dead, false},
		{"topic:h/__consumer_offsets", retired, false},
		{"h/orders.dlq/00-1", dead, false},
		{"h/orders.dlq/+0-1", dead, false},
		{"h/orders.dlq/0--1", dead, false},
		{"h/orders.dlq/0-1/x", dead, false},
		{"h/or ders/0-1", dead, false},
		{"H/orders.dlq/0-1", dead, false},
		{"h//0-1", dead, false},
		{"topic:h", retired, false},
		{"topic:h/a/b", retired, false},
		{"h/orders.dlq/0-1", []byte(`{"state":"dead","at":"2026-01-01T00:00:00Z"}{}`), false},
		{"h/orders.dlq/0-1", []byte(`{"state":"dead","at":"2026-01-01T00:00:00Z","x":1}`), false},
	} {
		if got := q.checkState(c.key, c.value, 0); got != c.ok {
			t.Errorf("checkState(%q, %s) = %v, want %v", c.key, c.value, got, c.ok)
		}
	}
}

// One source message is one entry however many records its dead-lettering
// left (a retried write that had landed, a crash before the commit), on
// every node the same; a replayed message that failed again is an entry of
// its own. Listing, getting, replaying and discarding all see the entries.
func TestDuplicateRecordsAreOneEntry(t *testing.T) {
	q, tc, brokers := testQueue(t)
	ctx := context.Background()
	const topic = "h.dlq"
	if err := tc.Create(ctx, topic, 3, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour) // failures before any mark
	// Ten source messages; message 2 dead-lettered three times, 4 and 6
	// twice: 14 records.
	writes := map[int]int{2: 3, 4: 2, 6: 2}
	for i := range 10 {
		for range max(1, writes[i]) {
			if err := q.DeadLetter(ctx, topic, msg("src", 0, int64(i), fmt.Sprintf("v%d", i)), failure("h", now.Add(time.Duration(i)*time.Second))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A duplicate in another partition than its first record, as a keyless
	// or repartitioned write can leave.
	recs, err := q.scan(ctx, "h", topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	var first Entry
	for _, r := range recs {
		if r.SourceOffset == 8 {
			first = r
		}
	}
	other := (first.raw.Partition + 1) % 3
	if _, err := tc.Produce(ctx, topic, []topics.Record{{Key: first.raw.Key, Value: first.raw.Value, Headers: first.raw.Headers, Partition: other}}); err != nil {
		t.Fatal(err)
	}
	// Another handler's record of the same source is not this handler's.
	if err := q.DeadLetter(ctx, topic, msg("src", 0, 2, "v2"), failure("other", now)); err != nil {
		t.Fatal(err)
	}
	// Message 1 was replayed and failed again: a new entry.
	if err := q.DeadLetter(ctx, topic, msg("src", 0, 1, "v1", handlers.Header{Key: handlers.HeaderReplayOf, Value: []byte(topic + "/0-0")}), failure("h", now.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	p := listAll(t, q, "h", topic, Filter{})
	sources := map[string]int{}
	for _, e := range p.Entries {
		sources[e.sourceID()+" "+e.ReplayOf]++
	}
	fmt.Printf("duplicate dead-letter records: %d records of handler h, %d entries, %d duplicate records folded\n", 16, p.Total, p.DuplicateRecords)
	if p.Total != 11 || p.DuplicateRecords != 5 || len(sources) != 11 {
		t.Fatalf("listing: %d entries, %d duplicate records, %d distinct; want 11, 5, 11", p.Total, p.DuplicateRecords, len(sources))
	}
	// The same entries, with the same ids, on another node.
	q2 := runQueue(t, testkit.Topics(t, brokers), brokers)
	p2 := listAll(t, q2, "h", topic, Filter{})
	ids := func(p Page) []string {
		var out []string
		for _, e := range p.Entries {
			out = append(out, e.ID+"+"+fmt.Sprint(e.Duplicates))
		}
		sort.Strings(out)
		return out
	}
	if fmt.Sprint(ids(p)) != fmt.Sprint(ids(p2)) {
		t.Fatalf("two nodes see different entries:\n%v\n%v", ids(p), ids(p2))
	}
	// The lowest offset is the entry; a get of a later record says whose
	// duplicate it is.
	var two Entry
	for _, e := range p.Entries {
		if e.SourceOffset == 2 {
			two = e
		}
	}
	if len(two.Duplicates) != 2 {
		t.Fatalf("entry of message 2: %+v", two)
	}
	dup, err := q.Get(ctx, "h", topic, two.Duplicates[1])
	if err != nil || dup.DuplicateOf != two.ID || dup.State != StateDead || dup.Value == nil || *dup.Value != "v2" {
		t.Fatalf("get of a duplicate: %+v %v", dup, err)
	}
	if e, err := q.Get(ctx, "h", topic, two.ID); err != nil || e.DuplicateOf != "" || len(e.Duplicates) != 2 {
		t.Fatalf("get of the entry: %+v %v", e, err)
	}
	// Discarding by a duplicate's id discards the entry, every record of it.
	if n, err := q.Discard(ctx, "h", topic, Selection{IDs: []string{two.Duplicates[0]}}, nil); err != nil || n != 1 {
		t.Fatalf("discard by a duplicate id: %d %v", n, err)
	}
	if d := listAll(t, q, "h", topic, Filter{State: StateDiscarded}); d.Total != 1 || d.Entries[0].ID != two.ID {
		t.Fatalf("discarded: %+v", d)
	}
	// A replay of all delivers each dead entry once, with progress.
	var values []string
	var progress []string
	n, err := q.ReplayVia(ctx, "h", topic, func(_ context.Context, recs []topics.Record) error {
		for _, r := range recs {
			values = append(values, string(r.Value))
		}
		return nil
	}, Selection{All: true}, func(done, total int) { progress = append(progress, fmt.Sprintf("%d/%d", done, total)) })
	sort.Strings(values)
	want := []string{"v0", "v1", "v1", "v3", "v4", "v5", "v6", "v7", "v8", "v9"}
	if err != nil || n != 10 || fmt.Sprint(values) != fmt.Sprint(want) || fmt.Sprint(progress) != "[0/10 10/10]" {
		t.Fatalf("replay all: %d %v %v progress %v", n, err, values, progress)
	}
	fmt.Printf("replay of all: %d deliveries for %d dead entries\n", len(values), n)
	if d := listAll(t, q, "h", topic, Filter{State: StateDead}); d.Total != 0 {
		t.Fatalf("%d entries still dead after the replay", d.Total)
	}
	// The other node reads the same states once its table has them.
	var r Page
	testkit.Eventually(t, 20*time.Second, func() bool {
		r = listAll(t, q2, "h", topic, Filter{State: StateReplayed})
		return r.Total == 10 && r.DuplicateRecords == 3
	}, "the other node to see 10 replayed entries with 3 duplicate records")
	if o := listAll(t, q, "other", topic, Filter{}); o.Total != 1 || o.Entries[0].State != StateDead {
		t.Fatalf("the other handler's entry: %+v", o)
	}
}

// The replayed message carries the entry it replays; its failure carries
// it on as sluice-dlq-replay-of.
func TestReplayOfIsCarriedToTheNextFailure(t *testing.T) {
	q, tc, _ := testQueue(t)
	ctx := context.Background()
	if err := tc.Create(ctx, "r.dlq", 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(ctx, "r.dlq", msg("src", 0, 5, "x"), failure("r", time.Now())); err != nil {
		t.Fatal(err)
	}
	var rec topics.Record
	if _, err := q.ReplayVia(ctx, "r", "r.dlq", func(_ context.Context, recs []topics.Record) error { rec = recs[0]; return nil }, Selection{All: true}, nil); err != nil {
		t.Fatal(err)
	}
	var hs []handlers.Header
	for _, h := range rec.Headers {
		hs = append(hs, handlers.Header{Key: h.Key, Value: h.Value})
	}
	m := msg("src", 0, 5, "x", hs...) // as the consumer restores it
	if err := q.DeadLetter(ctx, "r.dlq", m, failure("r", time.Now())); err != nil {
		t.Fatal(err)
	}
	p := listAll(t, q, "r", "r.dlq", Filter{})
	if p.Total != 2 || p.DuplicateRecords != 0 || p.Entries[0].ReplayOf != "r.dlq/0-0" || p.Entries[0].State != StateDead {
		t.Fatalf("after a replayed message failed again: %+v", p)
	}
}

// Jobs run one at a time per handler, report progress and their outcome.
func TestJobsOnePerHandler(t *testing.T) {
	j := NewJobs(context.Background(), "n1", nil)
	release := make(chan struct{})
	first, err := j.Start(context.Background(), "h", JobReplay, "h.dlq", func(ctx context.Context, p Progress) (int, error) {
		p(0, 3)
		p(2, 3)
		<-release
		return 3, nil
	})
	if err != nil || first.State != JobRunning {
		t.Fatalf("start: %+v %v", first, err)
	}
	if _, err := j.Start(context.Background(), "h", JobDiscard, "h.dlq", func(context.Context, Progress) (int, error) { return 0, nil }); !errors.Is(err, ErrJobRunning) {
		t.Fatalf("a second job of h: %v, want ErrJobRunning", err)
	}
	other, err := j.Start(context.Background(), "g", JobDiscard, "g.dlq", func(context.Context, Progress) (int, error) { return 0, errors.New("broker gone") })
	if err != nil {
		t.Fatalf("a job of another handler: %v", err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { got, _ := j.Get("h", first.ID); return got.Done == 2 && got.Total == 3 }, "progress 2 of 3")
	close(release)
	testkit.Eventually(t, 10*time.Second, func() bool { got, _ := j.Get("h", first.ID); return got.State == JobSucceeded }, "the job succeeded")
	if got, _ := j.Get("h", first.ID); got.Done != 3 || got.Total != 3 || got.FinishedAt.IsZero() || got.Node != "n1" {
		t.Fatalf("finished job: %+v", got)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { got, _ := j.Get("g", other.ID); return got.State == JobFailed }, "the other job failed")
	if got, _ := j.Get("g", other.ID); got.Error != "broker gone" {
		t.Fatalf("failed job: %+v", got)
	}
	if _, err := j.Get("g", first.ID); !errors.Is(err, ErrNoJob) {
		t.Fatalf("a job asked for under another handler: %v", err)
	}
	if _, err := j.Start(context.Background(), "h", JobDiscard, "h.dlq", func(context.Context, Progress) (int, error) { return 0, nil }); err != nil {
		t.Fatalf("a job after the first ended: %v", err)
	}
	j.Wait()
	if l := j.List("h"); len(l) != 2 {
		t.Fatalf("jobs of h: %d", len(l))
	}
}

// With the state topic as their store, jobs are seen from every node, one
// runs per handler across nodes, and a running job whose node stopped
// refreshing it shows as failed and no longer blocks a new one.
func TestStoredJobsAreSeenEverywhere(t *testing.T) {
	q1, _, brokers := testQueue(t)
	q2 := runQueue(t, testkit.Topics(t, brokers), brokers)
	ctx := context.Background()
	jctx, stop := context.WithCancel(ctx)
	j1, j2 := NewJobs(jctx, "node-1", q1), NewJobs(jctx, "node-2", q2)
	release := make(chan struct{})
	job, err := j1.Start(ctx, "h", JobReplay, "h.dlq", func(ctx context.Context, p Progress) (int, error) {
		p(500, 1200)
		<-release
		return 1200, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		got, err := j2.Get("h", job.ID)
		return err == nil && got.Done == 500 && got.Total == 1200 && got.State == JobRunning && got.Node == "node-1"
	}, "node 2 to see the job at 500 of 1200")
	if _, err := j2.Start(ctx, "h", JobDiscard, "h.dlq", func(context.Context, Progress) (int, error) { return 0, nil }); !errors.Is(err, ErrJobRunning) || !strings.Contains(err.Error(), "node-1") {
		t.Fatalf("a second job of h on node 2: %v, want ErrJobRunning naming node-1", err)
	}
	close(release)
	testkit.Eventually(t, 20*time.Second, func() bool {
		got, _ := j2.Get("h", job.ID)
		return got.State == JobSucceeded && got.Done == 1200
	}, "node 2 to see the job succeed")
	// A crashed node's job: running, not refreshed for longer than
	// JobStaleAfter.
	old := time.Now().Add(-2 * JobStaleAfter).UTC()
	ghost := Job{ID: "00112233aabbccdd", Handler: "g", Kind: JobReplay, Topic: "g.dlq", State: JobRunning, Done: 500, Total: 900,
		Node: "node-9", StartedAt: old, UpdatedAt: old}
	if err := q1.PutJob(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { _, err := j2.Get("g", ghost.ID); return err == nil }, "node 2 to read the crashed node's job")
	got, err := j2.Get("g", ghost.ID)
	if err != nil || got.State != JobFailed || !strings.Contains(got.Error, "abandoned") || got.Done != 500 {
		t.Fatalf("a crashed node's job: %+v %v", got, err)
	}
	if _, err := j2.Start(ctx, "g", JobReplay, "g.dlq", func(context.Context, Progress) (int, error) { return 0, nil }); err != nil {
		t.Fatalf("a job after an abandoned one: %v", err)
	}
	// A job cut short by the node stopping says so.
	cut, err := j1.Start(ctx, "c", JobDiscard, "c.dlq", func(ctx context.Context, p Progress) (int, error) {
		p(0, 10)
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	j1.Wait()
	j2.Wait()
	// Node 2 reads the outcome once its table has the row.
	var last Job
	testkit.Eventually(t, 20*time.Second, func() bool {
		last, _ = j2.Get("c", cut.ID)
		return last.State == JobFailed && strings.Contains(last.Error, "node stopped mid-job")
	}, "node 2 to see the job cut short: %+v", &last)
	if l := j2.List("h"); len(l) != 1 || l[0].ID != job.ID {
		t.Fatalf("jobs of h on node 2: %+v", l)
	}
	// Forged job rows are refused.
	for _, c := range []struct{ key, value string }{
		{"job:h/" + job.ID, `{"id":"ffffffffffffffff","handler":"h","kind":"replay","topic":"h.dlq","state":"running","done":0,"total":0,"startedAt":"2026-01-01T00:00:00Z"}`},
		{"job:h/xyz", `{}`},
		{"job:h/" + job.ID, `{"id":"` + job.ID + `","handler":"h","kind":"delete","topic":"h.dlq","state":"running","done":0,"total":0,"startedAt":"2026-01-01T00:00:00Z"}`},
		{"job:h/" + job.ID, `{"id":"` + job.ID + `","handler":"h","kind":"replay","topic":"__x","state":"running","done":0,"total":0,"startedAt":"2026-01-01T00:00:00Z"}`},
		{"job:h/" + job.ID, `{"id":"` + job.ID + `","handler":"h","kind":"replay","topic":"h.dlq","state":"running","done":-1,"total":0,"startedAt":"2026-01-01T00:00:00Z"}`},
	} {
		if q1.checkState(c.key, []byte(c.value), 0) {
			t.Errorf("checkState admitted %s = %s", c.key, c.value)
		}
	}
	const fresh = "0123456789abcdef"
	if !q1.checkState("job:h/"+fresh, []byte(`{"id":"`+fresh+`","handler":"h","kind":"replay","topic":"h.dlq","state":"running","done":0,"total":0,"startedAt":"2026-01-01T00:00:00Z"}`), 0) {
		t.Error("checkState refused a valid job row")
	}
	// A progress write that lands after the job's outcome is not applied,
	// and is not counted as invalid.
	invalid := q1.InvalidStates()
	if q1.checkState("job:h/"+job.ID, []byte(`{"id":"`+job.ID+`","handler":"h","kind":"replay","topic":"h.dlq","state":"running","done":500,"total":1200,"startedAt":"2026-01-01T00:00:00Z"}`), 0) {
		t.Error("checkState applied a running row over the job's outcome")
	}
	if q1.InvalidStates() != invalid {
		t.Error("a late progress row was counted as invalid")
	}
}

// A record of the same source that failed after its entry was replayed is
// a new failure (an earlier version did not record replay-of), not a
// duplicate folded into the replayed entry, where it would never be
// replayed.
func TestFailureAfterTheEntryWasReplayedIsANewEntry(t *testing.T) {
	q, tc, _ := testQueue(t)
	ctx := context.Background()
	if err := tc.Create(ctx, "l.dlq", 1, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := q.DeadLetter(ctx, "l.dlq", msg("src", 0, 3, "x"), failure("l", now.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(ctx, "l.dlq", msg("src", 0, 3, "x"), failure("l", now.Add(-time.Minute))); err != nil { // a duplicate
		t.Fatal(err)
	}
	write := func(context.Context, []topics.Record) error { return nil }
	if n, err := q.ReplayVia(ctx, "l", "l.dlq", write, Selection{All: true}, nil); err != nil || n != 1 {
		t.Fatalf("first replay: %d %v", n, err)
	}
	// The replay failed again, dead-lettered without sluice-dlq-replay-of.
	if err := q.DeadLetter(ctx, "l.dlq", msg("src", 0, 3, "x"), failure("l", time.Now().Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	p := listAll(t, q, "l", "l.dlq", Filter{})
	if p.Total != 2 || p.DuplicateRecords != 1 || p.Entries[0].ID != "0-2" || p.Entries[0].State != StateDead || p.Entries[1].State != StateReplayed {
		t.Fatalf("entries: %+v", p)
	}
	if n, err := q.ReplayVia(ctx, "l", "l.dlq", write, Selection{All: true}, nil); err != nil || n != 1 {
		t.Fatalf("second replay: %d %v", n, err)
	}
}
