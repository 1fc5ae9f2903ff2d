package queues

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// dlq_redis_test.go: the Redis dead-letter stream beyond the shared
// contract: what other clients write into it, what Watermill's own
// subscriber reads from it, and a large read.

func redisDLQTest(t *testing.T) (context.Context, *redisDriver, DeadLetterLog, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	q := New(suiteConfig())
	t.Cleanup(func() { q.Close() })
	d, err := q.driver(handlers.SourceRedis)
	if err != nil {
		t.Fatal(err)
	}
	rd := d.(*redisDriver)
	if err := rd.ping(ctx); err != nil {
		t.Skipf("redis: %v", err)
	}
	l, err := q.DeadLetterLog(handlers.SourceRedis)
	if err != nil {
		t.Fatal(err)
	}
	topic := dlqTestTopic()
	t.Cleanup(func() {
		if err := q.DeleteDeadLetterTopic(context.Background(), handlers.SourceRedis, topic); err != nil {
			t.Errorf("deleting %s: %v", topic, err)
		}
	})
	return ctx, rd, l, topic
}

// Entries written by other clients with ids 0-n, in the middle of ours,
// are read as well as they can be, or skipped; none stops the read.
func TestRedisDeadLetterHostileEntries(t *testing.T) {
	ctx, rd, l, topic := redisDLQTest(t)
	if _, err := l.Produce(ctx, topic, []topics.Record{dlqRecord(0)}); err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("h", 2*maxHeaderBytes)
	hostile := [][]any{
		{"metadata", "\xc1\xff garbage", "payload", "p1"},         // metadata that is no msgpack
		{"metadata", "\xdf\xff\xff\xff\xff", "payload", "p2"},     // a map claiming 4 billion entries
		{"metadata", "\x81\xdb\x7f\xff\xff\xff", "payload", "p3"}, // a key claiming 2 GiB
		{"id", "7", "total", "12"},                                // neither payload nor value
		{"value", "v5", "key", "k5", dlqRedisTimeField, "banana"}, // a time that is no number
		{"payload", "p6", huge, "x", "h", huge},                   // headers too long
		{"payload", "p7", dlqRedisTimeField, "-99999999999999999999"},
		{redisstream.UUIDHeaderKey, strings.Repeat("u", 1000), "payload", "p8"},
	}
	for _, vals := range hostile {
		if err := rd.rc.XAdd(ctx, &redis.XAddArgs{Stream: topic, ID: "0-*", Values: vals}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A gap: entries deleted by another client.
	id, err := rd.rc.XAdd(ctx, &redis.XAddArgs{Stream: topic, ID: "0-*", Values: []any{"payload", "gone"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.rc.XDel(ctx, topic, id).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Produce(ctx, topic, []topics.Record{dlqRecord(1)}); err != nil {
		t.Fatal(err)
	}
	rgs, err := l.Offsets(ctx, topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rgs[0] != (topics.Range{Start: 0, End: 11}) {
		t.Fatalf("Offsets %+v, want [0, 11)", rgs[0])
	}
	got := readAll(t, ctx, l, topic, rgs[0].Start, rgs[0].End)
	if len(got) != 10 {
		t.Fatalf("%d records, want 10 (the deleted one missing): %v", len(got), offsets(got))
	}
	if string(got[0].Value) != string(dlqRecord(0).Value) || string(got[9].Value) != string(dlqRecord(1).Value) || got[9].Offset != 10 {
		t.Fatalf("first %q, last %q at %d", got[0].Value, got[9].Value, got[9].Offset)
	}
	for i, m := range got[1:9] {
		for _, h := range m.Headers {
			if len(h.Key)+len(h.Value) > maxHeaderBytes {
				t.Fatalf("entry %d: a header of %d bytes", i+1, len(h.Key)+len(h.Value))
			}
		}
		if !m.Time.IsZero() {
			t.Fatalf("entry %d: time %s from no valid sluice_time", i+1, m.Time)
		}
	}
	if string(got[4].Value) != `{"id":"7","total":"12"}` {
		t.Fatalf("fields as payload: %q", got[4].Value)
	}
	if string(got[5].Value) != "v5" || string(got[5].Key) != "k5" {
		t.Fatalf("value and key fields: %q %q", got[5].Value, got[5].Key)
	}
}

// Once another client adds an entry with a time-based id, 0-n ids can no
// longer follow: Produce says so, and what was there is still read.
func TestRedisDeadLetterAfterATimeBasedID(t *testing.T) {
	ctx, rd, l, topic := redisDLQTest(t)
	if _, err := l.Produce(ctx, topic, []topics.Record{dlqRecord(0), dlqRecord(1)}); err != nil {
		t.Fatal(err)
	}
	if err := rd.rc.XAdd(ctx, &redis.XAddArgs{Stream: topic, Values: []any{"payload", "foreign"}}).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := l.Produce(ctx, topic, []topics.Record{dlqRecord(2)})
	if err == nil || !strings.Contains(err.Error(), topic) || !strings.Contains(err.Error(), "time-based id") {
		t.Fatalf("Produce after a time-based id: %v, want an error naming the stream and why", err)
	}
	t.Log(err)
	rgs, err := l.Offsets(ctx, topic, 1)
	if err != nil || rgs[0] != (topics.Range{Start: 0, End: 2}) {
		t.Fatalf("Offsets %+v, %v; want [0, 2)", rgs, err)
	}
	if got := readAll(t, ctx, l, topic, 0, 1<<62); len(got) != 2 || got[1].Offset != 1 {
		t.Fatalf("read %v, want offsets 0 and 1", offsets(got))
	}
}

// What Sluice writes is what watermill-redisstream's default unmarshaller
// reads: the payload, the key and the headers in its metadata.
func TestRedisDeadLetterIsWatermillMessage(t *testing.T) {
	ctx, rd, l, topic := redisDLQTest(t)
	rec := dlqRecord(2)
	if _, err := l.Produce(ctx, topic, []topics.Record{rec}); err != nil {
		t.Fatal(err)
	}
	ents, err := rd.rc.XRange(ctx, topic, "-", "+").Result()
	if err != nil || len(ents) != 1 || ents[0].ID != "0-1" {
		t.Fatalf("XRANGE: %v, %v", ents, err)
	}
	wm, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(ents[0].Values)
	if err != nil {
		t.Fatal(err)
	}
	if string(wm.Payload) != string(rec.Value) || wm.Metadata.Get("key") != string(rec.Key) || wm.UUID == "" {
		t.Fatalf("watermill reads %q key %q uuid %q", wm.Payload, wm.Metadata.Get("key"), wm.UUID)
	}
	for _, h := range rec.Headers {
		if wm.Metadata.Get(h.Key) != string(h.Value) {
			t.Fatalf("watermill reads header %s = %q, want %q", h.Key, wm.Metadata.Get(h.Key), h.Value)
		}
	}
}

// A missing stream is an unknown topic; reading a huge range of a large
// stream is quick and in batches; a stop ends the read at once.
func TestRedisDeadLetterLargeRead(t *testing.T) {
	ctx, _, l, topic := redisDLQTest(t)
	if _, err := l.Offsets(ctx, topic, 1); !errors.Is(err, topics.ErrUnknownTopic) {
		t.Fatalf("Offsets of a missing stream: %v", err)
	}
	const n = 20000
	recs := make([]topics.Record, 0, 2000)
	for i := 0; i < n; i++ {
		recs = append(recs, topics.Record{Value: []byte(fmt.Sprint(i)), Headers: []kafka.Header{{Key: "i", Value: []byte(fmt.Sprint(i))}}})
		if len(recs) == cap(recs) {
			ps, err := l.Produce(ctx, topic, recs)
			if err != nil {
				t.Fatal(err)
			}
			if ps[0].Offset != int64(i+1-len(recs)) || ps[len(ps)-1].Offset != int64(i) {
				t.Fatalf("produced at %d..%d", ps[0].Offset, ps[len(ps)-1].Offset)
			}
			recs = recs[:0]
		}
	}
	start := time.Now()
	got := readAll(t, ctx, l, topic, -5, 1<<62)
	took := time.Since(start)
	if len(got) != n {
		t.Fatalf("%d records, want %d", len(got), n)
	}
	for i, m := range got {
		if m.Offset != int64(i) || string(m.Value) != fmt.Sprint(i) {
			t.Fatalf("record %d: offset %d value %q", i, m.Offset, m.Value)
		}
	}
	t.Logf("read %d records in %s", n, took)
	if took > 10*time.Second { // about 0.3 s here, 2.5 s under -race on a loaded machine
		t.Fatalf("reading %d records took %s", n, took)
	}
	calls := 0
	if err := l.Read(ctx, topic, 0, 0, 1<<62, func(topics.Message) bool { calls++; return calls < 1500 }); err != nil || calls != 1500 {
		t.Fatalf("stopped read: %d calls, %v", calls, err)
	}
}
