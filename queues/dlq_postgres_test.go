package queues

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// dlq_postgres_test.go: the postgres dead-letter topic beyond the shared
// contract: rows written by other clients (anything the table accepts),
// a large topic read in bounded time, names, and a topic deleted and
// written again.

func pgDLQ(t *testing.T) (*Queues, *postgresDriver, DeadLetterLog) {
	t.Helper()
	q := New(suiteConfig())
	t.Cleanup(func() { q.Close() })
	d, err := q.driver(handlers.SourcePostgres)
	if err != nil {
		t.Fatal(err)
	}
	l, err := q.DeadLetterLog(handlers.SourcePostgres)
	if err != nil {
		t.Fatal(err)
	}
	return q, d.(*postgresDriver), l
}

func TestPostgresDeadLetterTopicReadsHostileRows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, d, l := pgDLQ(t)
	topic := dlqTestTopic()
	defer q.DeleteDeadLetterTopic(context.Background(), handlers.SourcePostgres, topic)

	if _, err := l.Produce(ctx, topic, []topics.Record{{Key: []byte("k0"), Value: []byte("first")}}); err != nil {
		t.Fatal(err)
	}
	db, err := d.open()
	if err != nil {
		t.Fatal(err)
	}
	table := pgSchema().MessagesTable(topic)
	many := map[string]string{}
	for i := 0; i < 300; i++ {
		many[fmt.Sprintf("h%03d", i)] = "v"
	}
	var b strings.Builder
	b.WriteString("{")
	for k := range many {
		fmt.Fprintf(&b, "%q:%q,", k, "v")
	}
	b.WriteString(`"key":"many"}`)
	big := `{"key":"big","x":"` + strings.Repeat("a", dlqMaxMetadataBytes) + `"}`
	// What psql or any client can insert: the column is JSON, any JSON.
	for _, ins := range []struct{ payload, metadata any }{
		{[]byte("array"), `[1,2,3]`},
		{[]byte("mixed"), `{"key":"k-mixed","n":7,"o":{"a":1},"nul":null,"s":"ok","":"empty name"}`},
		{[]byte("null-json"), `null`},
		{[]byte("sql-null"), nil},
		{nil, `{"key":"no-payload"}`},
		{[]byte("number"), `42`},
		{[]byte("many"), b.String()},
		{[]byte("big-metadata"), big},
		{[]byte("escapes"), `{"key":"\u0000","h":"\u00e9\n"}`},
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO `+table+` (payload, metadata) VALUES ($1, $2::json)`, ins.payload, ins.metadata); err != nil {
			t.Fatalf("insert %s: %v", ins.payload, err)
		}
	}
	// A row reusing an offset already taken (the primary key is
	// (transaction_id, offset)): skipped, offsets stay unique.
	if _, err := db.ExecContext(ctx, `INSERT INTO `+table+` ("offset", payload, metadata) SELECT min("offset"), 'dup', '{}' FROM `+table); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Produce(ctx, topic, []topics.Record{{Value: []byte("last"), Headers: []kafka.Header{{Key: "a", Value: []byte("b")}}}}); err != nil {
		t.Fatal(err)
	}

	rgs, err := l.Offsets(ctx, topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, ctx, l, topic, rgs[0].Start, rgs[0].End)
	byValue := map[string]topics.Message{}
	for i, m := range got {
		if i > 0 && m.Offset <= got[i-1].Offset {
			t.Fatalf("offsets not growing: %v", offsets(got))
		}
		byValue[string(m.Value)] = m
	}
	if len(got) != 11 || string(got[0].Value) != "first" || string(got[10].Value) != "last" {
		vs := []string{}
		for _, m := range got {
			vs = append(vs, string(m.Value))
		}
		t.Fatalf("read %d rows %q, want the 11 with unique offsets, first to last", len(got), vs)
	}
	if m := byValue["array"]; len(m.Key) != 0 || len(m.Headers) != 1 || m.Headers[0].Key != "metadata" || string(m.Headers[0].Value) != "[1,2,3]" {
		t.Fatalf("array metadata: key %q headers %v", m.Key, m.Headers)
	}
	if m := byValue["mixed"]; string(m.Key) != "k-mixed" || len(m.Headers) != 1 || m.Headers[0].Key != "s" {
		t.Fatalf("mixed metadata: key %q headers %v, want only the string s", m.Key, m.Headers)
	}
	if m := byValue[""]; string(m.Key) != "no-payload" {
		t.Fatalf("no payload: key %q", m.Key)
	}
	if m := byValue["many"]; string(m.Key) != "many" || len(m.Headers) != maxHeaders {
		t.Fatalf("300 headers: key %q, %d headers kept, want %d", m.Key, len(m.Headers), maxHeaders)
	}
	if m := byValue["big-metadata"]; m.Key != nil || m.Headers != nil {
		t.Fatalf("metadata over the bound: key %q, %d headers, want none", m.Key, len(m.Headers))
	}
	if m := byValue["last"]; headerMap(m.Headers)["a"] != "b" || m.Key != nil {
		t.Fatalf("last: key %q headers %v", m.Key, m.Headers)
	}
}

func TestPostgresDeadLetterTopicLargeReadAndLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	q, d, l := pgDLQ(t)
	topic := dlqTestTopic()
	defer q.DeleteDeadLetterTopic(context.Background(), handlers.SourcePostgres, topic)

	for _, bad := range []string{"", "a b", `x";DROP TABLE t;--`, strings.Repeat("a", 41)} {
		if _, err := l.Partitions(ctx, bad); err == nil || errors.Is(err, topics.ErrUnknownTopic) {
			t.Fatalf("topic %q: %v, want a name error", bad, err)
		}
		if _, err := l.Produce(ctx, bad, []topics.Record{{Value: []byte("x")}}); err == nil {
			t.Fatalf("Produce to %q: no error", bad)
		}
	}
	if _, err := l.Offsets(ctx, topic, 1); !errors.Is(err, topics.ErrUnknownTopic) {
		t.Fatalf("Offsets of a missing topic: %v", err)
	}
	if err := l.Read(ctx, topic, 0, 0, 10, func(topics.Message) bool { return true }); !errors.Is(err, topics.ErrUnknownTopic) {
		t.Fatalf("Read of a missing topic: %v", err)
	}

	// 20,000 records in 4 calls.
	const n = 20000
	recs := make([]topics.Record, 0, n/4)
	var produced []topics.Produced
	for i := 0; i < n; i++ {
		recs = append(recs, dlqRecord(i))
		if len(recs) == n/4 {
			p, err := l.Produce(ctx, topic, recs)
			if err != nil {
				t.Fatal(err)
			}
			produced = append(produced, p...)
			recs = recs[:0]
		}
	}
	start := time.Now()
	count := 0
	var last int64 = -1
	err := l.Read(ctx, topic, 0, -1<<62, 1<<62, func(m topics.Message) bool {
		if m.Offset <= last || produced[count].Offset != m.Offset || string(m.Value) != string(dlqRecord(count).Value) {
			t.Fatalf("record %d at %d (produced at %d, previous %d): %q", count, m.Offset, produced[count].Offset, last, m.Value)
		}
		last = m.Offset
		count++
		return true
	})
	took := time.Since(start)
	if err != nil || count != n {
		t.Fatalf("read %d of %d: %v", count, n, err)
	}
	t.Logf("read %d records in %s", n, took)
	if took > 5*time.Second {
		t.Fatalf("reading %d records took %s", n, took)
	}

	// Emptied by another client: Start == End, not before the old End.
	rgs, err := l.Offsets(ctx, topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	db, _ := d.open()
	if _, err := db.ExecContext(ctx, `DELETE FROM `+pgSchema().MessagesTable(topic)); err != nil {
		t.Fatal(err)
	}
	empty, err := l.Offsets(ctx, topic, 1)
	if err != nil || empty[0].Start != empty[0].End || empty[0].End < rgs[0].End {
		t.Fatalf("emptied: %+v, %v (was %+v)", empty[0], err, rgs[0])
	}

	// Deleted, then written again through the same publisher.
	if err := q.DeleteDeadLetterTopic(ctx, handlers.SourcePostgres, topic); err != nil {
		t.Fatal(err)
	}
	if err := q.DeleteDeadLetterTopic(ctx, handlers.SourcePostgres, topic); err != nil {
		t.Fatalf("deleting a missing topic: %v", err)
	}
	if _, err := l.Partitions(ctx, topic); !errors.Is(err, topics.ErrUnknownTopic) {
		t.Fatalf("after delete: %v", err)
	}
	p, err := l.Produce(ctx, topic, []topics.Record{dlqRecord(1)})
	if err != nil || len(p) != 1 || p[0].Offset < 0 {
		t.Fatalf("Produce after delete: %+v, %v", p, err)
	}
	if got := readAll(t, ctx, l, topic, p[0].Offset, p[0].Offset+1); len(got) != 1 {
		t.Fatalf("after delete: read %d", len(got))
	}
}
