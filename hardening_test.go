package sluice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/topics"
)

// A handler may not dead-letter into Sluice's own topics: a dead letter in
// __sluice_handlers would be read back as a handler (issue 11, finding 1).
func TestSpecMayNotWriteIntoInternalTopics(t *testing.T) {
	n := startNode(t)
	for _, dl := range []string{"__sluice_handlers", "__sluice_dlq_state", "__sluice.inj.replay"} {
		t.Run(dl, func(t *testing.T) {
			spec := fmt.Sprintf(`{"name":"inj","topic":"t1","http":{"url":"http://127.0.0.1:1/"},"deadLetter":{"topic":%q}}`, dl)
			code, body := n.do(t, "PUT", "/v1/handlers/inj", spec)
			var e api.Error
			_ = json.Unmarshal(body, &e)
			if code != 400 || e.Field != "deadLetter.topic" || !strings.Contains(e.Error, "internal topic") {
				t.Fatalf("got %d %s, want 400 naming deadLetter.topic", code, body)
			}
		})
	}
	if code, body := n.do(t, "GET", "/v1/handlers/inj", ""); code != 404 {
		t.Fatalf("a refused spec was registered: %d %s", code, body)
	}
	if code, body := n.do(t, "POST", "/v1/topics/__sluice_handlers/messages", `{"messages":[{"key":"x","value":"{}"}]}`); code != 400 {
		t.Fatalf("publish into the registry: %d %s", code, body)
	}
}

// A record written straight into the registry topic is held to the same
// rules as the API: an invalid spec never runs, is logged and counted.
func TestInvalidRegistryRecordNeverRuns(t *testing.T) {
	n := startNode(t)
	bad := newEndpoint(t)
	good := newEndpoint(t)
	tc := testkit.Topics(t, n.app.Brokers())
	rec := func(name, spec string) topics.Record {
		return topics.Record{Key: []byte(name), Value: []byte(`{"spec":` + spec + `,"paused":false}`), Partition: 0}
	}
	recs := []topics.Record{
		// Dead-letters into the registry itself.
		rec("evil", fmt.Sprintf(`{"name":"evil","topic":"shared","http":{"url":%q},"deadLetter":{"topic":"__sluice_handlers"}}`, bad.URL)),
		// Consumes the dead-letter states.
		rec("evil2", fmt.Sprintf(`{"name":"evil2","topic":"__sluice_dlq_state","http":{"url":%q}}`, bad.URL)),
		// Not JSON at all.
		{Key: []byte("evil3"), Value: []byte("not json"), Partition: 0},
		// Then a valid one, to know the node has read past the others.
		rec("fine", fmt.Sprintf(`{"name":"fine","topic":"shared","http":{"url":%q}}`, good.URL)),
	}
	if _, err := tc.Produce(context.Background(), "__sluice_handlers", recs); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { code, _ := n.do(t, "GET", "/v1/handlers/fine", ""); return code == 200 }, "the valid handler")
	for _, name := range []string{"evil", "evil2", "evil3"} {
		if code, body := n.do(t, "GET", "/v1/handlers/"+name, ""); code != 404 {
			t.Fatalf("invalid record %s was registered: %d %s", name, code, body)
		}
	}
	n.publishN(t, "shared", "m", 0, 30, 30)
	testkit.Eventually(t, 30*time.Second, func() bool { return good.distinct() == 30 }, "30 deliveries to the valid handler")
	if got := bad.count.Load(); got != 0 {
		t.Fatalf("the invalid handlers were invoked %d times", got)
	}
	var hl api.HandlerList
	_, body := n.do(t, "GET", "/v1/handlers", "")
	if err := json.Unmarshal(body, &hl); err != nil || len(hl.Handlers) != 1 {
		t.Fatalf("handlers: %s", body)
	}
	v, ok := metricValue(scrape(t, n.base), "sluice_state_invalid_records_total", map[string]string{"messaging_destination_name": "__sluice_handlers"})
	if !ok || v != 3 {
		t.Fatalf("invalid registry records metric = %v (found %v), want 3", v, ok)
	}
}

// A dead-letter state record that is not one of Sluice's does not change
// the entry it names.
func TestInvalidDeadLetterStateRecordIsNotApplied(t *testing.T) {
	n := startNode(t)
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 500, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"fails","topic":"ft","http":{"url":%q},"retry":{"maxAttempts":1}}`, ep.URL))
	n.publishN(t, "ft", "x", 0, 1, 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, "fails", "").Total == 1 }, "one dead letter")
	id := n.dlq(t, "fails", "").Entries[0].ID
	tc := testkit.Topics(t, n.app.Brokers())
	recs := []topics.Record{
		{Key: []byte("fails/" + id), Value: []byte(`[1,2,3]`), Partition: 0},                                        // not a state
		{Key: []byte("fails/" + id), Value: []byte(`{"state":"discarded"}`), Partition: 0},                          // no time
		{Key: []byte("fails/" + id), Value: []byte(`{"state":"gone","at":"2026-01-01T00:00:00Z"}`), Partition: 0},   // unknown state
		{Key: []byte("fails/x-y"), Value: []byte(`{"state":"dead","at":"2026-01-01T00:00:00Z"}`), Partition: 0},     // bad id
		{Key: []byte("other/0-0"), Value: []byte(`{"state":"replayed","at":"2026-01-01T00:00:00Z"}`), Partition: 0}, // valid, a marker
	}
	if _, err := tc.Produce(context.Background(), "__sluice_dlq_state", recs); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		v, _ := metricValue(scrape(t, n.base), "sluice_state_invalid_records_total", map[string]string{"messaging_destination_name": "__sluice_dlq_state"})
		return v == 4
	}, "4 invalid state records counted")
	p := n.dlq(t, "fails", "")
	if p.Total != 1 || p.Entries[0].State != "dead" {
		t.Fatalf("entry after invalid state records: %+v", p)
	}
}
