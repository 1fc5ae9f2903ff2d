package queues

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// dlqlog_test.go: every queue server's dead-letter log against the same
// contract, the one package dlq relies on (DeadLetterLog), on the local
// servers. Each source runs when its driver keeps dead-letter topics.

func TestDeadLetterLogs(t *testing.T) {
	for _, kind := range []handlers.Source{handlers.SourceRedis, handlers.SourceNATS, handlers.SourceAMQP, handlers.SourcePostgres} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			q := New(suiteConfig())
			defer q.Close()
			d, err := q.driver(kind)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := d.(deadLetterDriver); !ok {
				t.Skipf("%s keeps no dead-letter topics yet", kind)
			}
			testDeadLetterLog(t, q, kind)
		})
	}
}

// dlqTestTopic is a fresh dead-letter topic name every server accepts
// (postgres: a table-name part of up to 40).
func dlqTestTopic() string { return strings.ReplaceAll(uniqueName("wmdlq"), "-", "_") + "_dlq" }

func dlqRecord(i int) topics.Record {
	r := topics.Record{
		Value: []byte(fmt.Sprintf(`{"n":%d,"bin":"\u00e9"}`, i)),
		Headers: []kafka.Header{
			{Key: "sluice-dlq-error", Value: []byte(fmt.Sprintf("HTTP 500 for message %d: boom", i))},
			{Key: "sluice-dlq-attempts", Value: []byte("3")},
			{Key: "ce-type", Value: []byte("com.example.order")},
		},
		Partition: -1,
	}
	if i%2 == 0 { // every other record has a key
		r.Key = []byte(fmt.Sprintf("key-%d", i))
	}
	return r
}

func headerMap(hs []kafka.Header) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

func readAll(t *testing.T, ctx context.Context, l DeadLetterLog, topic string, from, to int64) []topics.Message {
	t.Helper()
	var out []topics.Message
	if err := l.Read(ctx, topic, 0, from, to, func(m topics.Message) bool { out = append(out, m); return true }); err != nil {
		t.Fatalf("Read [%d, %d): %v", from, to, err)
	}
	return out
}

func testDeadLetterLog(t *testing.T, q *Queues, kind handlers.Source) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := q.DeadLetterLog(kind)
	if err != nil {
		t.Fatal(err)
	}
	topic := dlqTestTopic()
	defer func() {
		if err := q.DeleteDeadLetterTopic(context.Background(), kind, topic); err != nil {
			t.Errorf("deleting %s: %v", topic, err)
		}
	}()

	// A topic that was never written does not exist.
	if _, err := l.Partitions(ctx, topic); !errors.Is(err, topics.ErrUnknownTopic) {
		t.Fatalf("Partitions of a new topic: %v, want topics.ErrUnknownTopic", err)
	}

	// Five records, written in two calls.
	start := time.Now()
	var want []topics.Record
	for i := 0; i < 5; i++ {
		want = append(want, dlqRecord(i))
	}
	if _, err := l.Produce(ctx, topic, want[:2]); err != nil {
		t.Fatalf("Produce: %v", err)
	}
	if _, err := l.Produce(ctx, topic, want[2:]); err != nil {
		t.Fatalf("Produce: %v", err)
	}
	if n, err := l.Partitions(ctx, topic); err != nil || n != 1 {
		t.Fatalf("Partitions: %d, %v; want 1", n, err)
	}
	rgs, err := l.Offsets(ctx, topic, 1)
	if err != nil {
		t.Fatalf("Offsets: %v", err)
	}
	rg := rgs[0]
	if rg.Start < 0 || rg.End < rg.Start+5 {
		t.Fatalf("Offsets: %+v, want at least 5 records", rg)
	}
	got := readAll(t, ctx, l, topic, rg.Start, rg.End)
	if len(got) != 5 {
		t.Fatalf("Read the whole range %+v: %d records, want 5", rg, len(got))
	}
	for i, m := range got {
		w := want[i]
		if m.Partition != 0 || m.Offset < rg.Start || m.Offset >= rg.End || i > 0 && m.Offset <= got[i-1].Offset {
			t.Fatalf("record %d at %d/%d: want partition 0, offsets growing within %+v", i, m.Partition, m.Offset, rg)
		}
		if string(m.Key) != string(w.Key) || string(m.Value) != string(w.Value) {
			t.Fatalf("record %d: key %q value %q, want %q %q", i, m.Key, m.Value, w.Key, w.Value)
		}
		gh, wh := headerMap(m.Headers), headerMap(w.Headers)
		for k, v := range wh {
			if gh[k] != v {
				t.Fatalf("record %d: header %s = %q, want %q (all: %v)", i, k, gh[k], v, gh)
			}
		}
		if m.Time.Before(start.Add(-time.Minute)) || m.Time.After(time.Now().Add(time.Minute)) {
			t.Fatalf("record %d: time %s, want about now (%s)", i, m.Time, start)
		}
	}

	// A sub-range, a single record, and a stop after the first.
	if sub := readAll(t, ctx, l, topic, got[1].Offset, got[3].Offset); len(sub) != 2 || sub[0].Offset != got[1].Offset || sub[1].Offset != got[2].Offset {
		t.Fatalf("Read [%d, %d): %+v, want records 1 and 2", got[1].Offset, got[3].Offset, offsets(sub))
	}
	if one := readAll(t, ctx, l, topic, got[4].Offset, got[4].Offset+1); len(one) != 1 || string(one[0].Value) != string(want[4].Value) {
		t.Fatalf("Read the single record at %d: %+v", got[4].Offset, offsets(one))
	}
	calls := 0
	if err := l.Read(ctx, topic, 0, rg.Start, rg.End, func(topics.Message) bool { calls++; return false }); err != nil || calls != 1 {
		t.Fatalf("Read stopped after the first: %d calls, %v", calls, err)
	}
	if none := readAll(t, ctx, l, topic, rg.End, rg.End+10); len(none) != 0 {
		t.Fatalf("Read past the end: %d records", len(none))
	}

	// Reading consumed nothing, and later records come after, with the
	// earlier ones where they were (an entry's id is its offset).
	more := []topics.Record{dlqRecord(5), dlqRecord(6), dlqRecord(7)}
	if _, err := l.Produce(ctx, topic, more); err != nil {
		t.Fatalf("Produce: %v", err)
	}
	rgs, err = l.Offsets(ctx, topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	all := readAll(t, ctx, l, topic, rgs[0].Start, rgs[0].End)
	if len(all) != 8 {
		t.Fatalf("after 3 more: %d records, want 8", len(all))
	}
	for i := 0; i < 5; i++ {
		if all[i].Offset != got[i].Offset || string(all[i].Value) != string(want[i].Value) {
			t.Fatalf("record %d moved: at %d, was at %d", i, all[i].Offset, got[i].Offset)
		}
	}
	if !sort.SliceIsSorted(all, func(i, j int) bool { return all[i].Offset < all[j].Offset }) || all[5].Offset <= got[4].Offset {
		t.Fatalf("offsets not growing: %v", offsets(all))
	}
	if string(all[7].Value) != string(more[2].Value) {
		t.Fatalf("last record %q, want %q", all[7].Value, more[2].Value)
	}
}

func offsets(ms []topics.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.Offset
	}
	return out
}
