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

// A publish request is bounded in messages as well as bytes: 2.5 million
// empty messages fit in 7.5 MB and once took a node from 40 MiB to 1.4 GiB
// (issue 11, finding 2). Past MaxPublishMessages it is 413, and nothing is
// published.
func TestPublishIsBoundedInMessages(t *testing.T) {
	n := startNode(t)
	var b strings.Builder
	b.WriteString(`{"messages":[`)
	for i := range 2_500_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("{}")
	}
	b.WriteString("]}")
	if b.Len() > 8<<20 {
		t.Fatalf("test body is %d bytes: over the byte limit, it would not test the message cap", b.Len())
	}
	code, body := n.do(t, "POST", "/v1/topics/bounded/messages", b.String())
	var e api.Error
	_ = json.Unmarshal(body, &e)
	if code != 413 || !strings.Contains(e.Error, fmt.Sprintf("at most %d messages", api.MaxPublishMessages)) {
		t.Fatalf("2.5M messages: got %d %s, want 413 naming the cap", code, body)
	}
	// At the cap it is accepted, and every message is published.
	msgs := strings.TrimSuffix(strings.Repeat(`{"value":"v"},`, api.MaxPublishMessages), ",")
	code, body = n.do(t, "POST", "/v1/topics/bounded/messages", `{"messages":[`+msgs+`]}`)
	var pr api.PublishResponse
	if code != 200 || json.Unmarshal(body, &pr) != nil || len(pr.Results) != api.MaxPublishMessages {
		t.Fatalf("%d messages: got %d, %d results", api.MaxPublishMessages, code, len(pr.Results))
	}
	// One over the cap: 413 again, and the topic still holds exactly the cap.
	code, _ = n.do(t, "POST", "/v1/topics/bounded/messages", `{"messages":[`+msgs+`,{}]}`)
	if code != 413 {
		t.Fatalf("%d messages: got %d, want 413", api.MaxPublishMessages+1, code)
	}
	tc := testkit.Topics(t, n.app.Brokers())
	parts, err := tc.Partitions(context.Background(), "bounded")
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := tc.Offsets(context.Background(), "bounded", parts)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, r := range ranges {
		total += r.End - r.Start
	}
	if total != api.MaxPublishMessages {
		t.Fatalf("topic holds %d messages, want %d", total, api.MaxPublishMessages)
	}
}

// JSON that is not valid UTF-8 is refused, not silently repaired with
// U+FFFD (issue 11, finding 6).
func TestPublishRefusesInvalidUTF8(t *testing.T) {
	n := startNode(t)
	cases := []struct{ name, body, field, msg string }{
		{"raw byte in value", "{\"messages\":[{\"value\":\"a\xffb\"}]}", "", "not valid UTF-8"},
		{"raw byte in key", "{\"messages\":[{\"key\":\"\xc3\",\"value\":\"x\"}]}", "", "not valid UTF-8"},
		{"lone surrogate in value", `{"messages":[{"value":"ok"},{"value":"a\ud800b"}]}`, "messages[1]", "lone surrogate"},
		{"lone surrogate in header", `{"messages":[{"value":"ok","headers":{"h":"\udfff"}}]}`, "messages[0]", "lone surrogate"},
		{"unknown field named with its message", `{"messages":[{"value":"ok"},{"vaule":"x"}]}`, "messages[1].vaule", "unknown field"},
		{"unknown top-level field", `{"messages":[{"value":"ok"}],"extra":1}`, "extra", "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := n.do(t, "POST", "/v1/topics/utf/messages", c.body)
			var e api.Error
			_ = json.Unmarshal(body, &e)
			if code != 400 || e.Field != c.field || !strings.Contains(e.Error, c.msg) {
				t.Fatalf("got %d %s, want 400 field %q containing %q", code, body, c.field, c.msg)
			}
		})
	}
	// A real U+FFFD, raw or escaped, is a character like any other.
	for _, v := range []string{`"\ufffd"`, "\"\uFFFD\""} {
		if code, body := n.do(t, "POST", "/v1/topics/utf/messages", `{"messages":[{"value":`+v+`}]}`); code != 200 {
			t.Fatalf("value %s: %d %s", v, code, body)
		}
	}
}
