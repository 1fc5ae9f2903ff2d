package queues

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// dlq_amqp_test.go: RabbitMQ's dead-letter streams beyond the shared
// contract: what other clients write, large reads, and a classic queue of
// that name (which must not be consumed).

func amqpDLQ(t *testing.T) (*Queues, *amqpDriver, DeadLetterLog) {
	t.Helper()
	q := New(suiteConfig())
	t.Cleanup(func() { q.Close() })
	d, err := q.driver(handlers.SourceAMQP)
	if err != nil {
		t.Fatal(err)
	}
	l, err := q.DeadLetterLog(handlers.SourceAMQP)
	if err != nil {
		t.Fatal(err)
	}
	return q, d.(*amqpDriver), l
}

func amqpRawPublish(t *testing.T, ctx context.Context, d *amqpDriver, topic string, ps []amqp.Publishing) {
	t.Helper()
	ch, err := d.control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", topic, false, false, p)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := c.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish: %v %v", ok, err)
		}
	}
}

// Records written to the stream by any other client are read back, bounded,
// without failing the Read.
func TestAMQPDeadLetterHostileRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, d, l := amqpDLQ(t)
	topic := dlqTestTopic()
	defer q.DeleteDeadLetterTopic(context.Background(), handlers.SourceAMQP, topic)
	if _, err := l.Produce(ctx, topic, []topics.Record{dlqRecord(0)}); err != nil {
		t.Fatal(err)
	}
	many := amqp.Table{}
	for i := 0; i < 300; i++ {
		many[fmt.Sprintf("h%03d", i)] = "v"
	}
	amqpRawPublish(t, ctx, d, topic, []amqp.Publishing{
		{}, // nothing at all: no headers, no body, no time
		{Headers: amqp.Table{"key": int32(7), "n": int64(1), "f": 1.5, "b": true, "t": time.Unix(0, 0), "bytes": []byte{0xff, 0}}},
		{Headers: amqp.Table{"nested": amqp.Table{"a": amqp.Table{"b": []any{"c", int32(1)}}}, "x-stream-offset": "spoofed", "_watermill_message_uuid": 42}},
		{Headers: many},
		{Headers: amqp.Table{"big": strings.Repeat("x", 65<<10), "key": strings.Repeat("k", 50<<10)}, Body: bytes.Repeat([]byte("b"), 1<<20)},
	})
	if _, err := l.Produce(ctx, topic, []topics.Record{dlqRecord(1)}); err != nil {
		t.Fatal(err)
	}
	rgs, err := l.Offsets(ctx, topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rgs[0].End-rgs[0].Start != 7 {
		t.Fatalf("Offsets %+v, want 7 records", rgs[0])
	}
	got := readAll(t, ctx, l, topic, 0, 1<<62)
	if len(got) != 7 {
		t.Fatalf("%d records, want 7: %v", len(got), offsets(got))
	}
	for i, m := range got {
		if i > 0 && m.Offset != got[i-1].Offset+1 {
			t.Fatalf("offsets %v", offsets(got))
		}
		if len(m.Headers) > maxHeaders {
			t.Fatalf("record %d: %d headers", i, len(m.Headers))
		}
		for _, h := range m.Headers {
			if len(h.Key)+len(h.Value) > maxHeaderBytes || h.Key == "x-stream-offset" || h.Key == "_watermill_message_uuid" {
				t.Fatalf("record %d: header %s (%d bytes) kept", i, h.Key, len(h.Value))
			}
		}
	}
	if string(got[0].Value) != string(dlqRecord(0).Value) || string(got[6].Value) != string(dlqRecord(1).Value) || string(got[6].Key) != "" {
		t.Fatalf("Sluice's records: %q %q key %q", got[0].Value, got[6].Value, got[6].Key)
	}
	if m := got[1]; len(m.Value) != 0 || m.Key != nil || len(m.Headers) != 0 || !m.Time.IsZero() {
		t.Fatalf("empty message read as %+v", m)
	}
	if h := headerMap(got[2].Headers); string(got[2].Key) != "7" || h["n"] != "1" || h["b"] != "true" || h["bytes"] != "\xff\x00" {
		t.Fatalf("typed headers read as key %q %v", got[2].Key, h)
	}
	if len(got[4].Headers) != maxHeaders {
		t.Fatalf("300 headers read as %d", len(got[4].Headers))
	}
	if m := got[5]; len(m.Value) != 1<<20 || len(m.Key) != 50<<10 || len(m.Headers) != 0 {
		t.Fatalf("oversized headers: key %d bytes, %d headers", len(m.Key), len(m.Headers))
	}
}

// A Read of 20,000 records is a stream of deliveries, not a round trip
// each; a Read of a huge range ends at the stream's end.
func TestAMQPDeadLetterLargeRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, _, l := amqpDLQ(t)
	topic := dlqTestTopic()
	defer q.DeleteDeadLetterTopic(context.Background(), handlers.SourceAMQP, topic)
	const n = 20000
	for b := 0; b < n; b += 5000 {
		recs := make([]topics.Record, 5000)
		for i := range recs {
			recs[i] = dlqRecord(b + i)
		}
		if _, err := l.Produce(ctx, topic, recs); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	rgs, err := l.Offsets(ctx, topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	rg := rgs[0]
	t.Logf("Offsets %+v in %s", rg, time.Since(start))
	if rg.End-rg.Start != n {
		t.Fatalf("Offsets %+v, want %d records", rg, n)
	}
	start = time.Now()
	got := readAll(t, ctx, l, topic, rg.Start, rg.End)
	took := time.Since(start)
	t.Logf("Read of %d records in %s", len(got), took)
	if len(got) != n || took > 5*time.Second { // about 0.8s, 2.5s with -race, on a shared 2-core machine
		t.Fatalf("Read %d records in %s, want %d in under 5s", len(got), took, n)
	}
	for i, m := range got {
		if m.Offset != rg.Start+int64(i) || string(m.Value) != string(dlqRecord(i).Value) {
			t.Fatalf("record %d at %d: %q", i, m.Offset, m.Value)
		}
	}
	start = time.Now()
	if all := readAll(t, ctx, l, topic, 0, 1<<62); len(all) != n {
		t.Fatalf("Read [0, 2^62): %d records", len(all))
	}
	t.Logf("Read [0, 2^62) in %s", time.Since(start))
	mid := readAll(t, ctx, l, topic, rg.Start+12345, rg.Start+12350)
	if len(mid) != 5 || mid[0].Offset != rg.Start+12345 || string(mid[0].Value) != string(dlqRecord(12345).Value) {
		t.Fatalf("Read from the middle: %v", offsets(mid))
	}
}

// A classic queue of the topic's name is refused, and keeps its messages.
func TestAMQPDeadLetterClassicQueueIsNotRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, d, l := amqpDLQ(t)
	topic := dlqTestTopic()
	defer q.DeleteDeadLetterTopic(context.Background(), handlers.SourceAMQP, topic)
	ch, err := d.control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(topic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.Close()
	amqpRawPublish(t, ctx, d, topic, []amqp.Publishing{{Body: []byte("a")}, {Body: []byte("b"), Headers: amqp.Table{"x-stream-offset": int64(0)}}})
	if _, err := l.Partitions(ctx, topic); err == nil || errors.Is(err, topics.ErrUnknownTopic) {
		t.Fatalf("Partitions of a classic queue: %v", err)
	}
	if err := l.Read(ctx, topic, 0, 0, 10, func(topics.Message) bool { return true }); err == nil {
		t.Fatal("Read of a classic queue: no error")
	}
	if _, err := l.Offsets(ctx, topic, 1); err == nil {
		t.Fatal("Offsets of a classic queue: no error")
	}
	if _, err := l.Produce(ctx, topic, []topics.Record{dlqRecord(0)}); err == nil {
		t.Fatal("Produce to a classic queue: no error")
	}
	ch, err = d.control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(topic, true, false, false, false, nil)
	if err != nil || st.Messages != 2 {
		t.Fatalf("classic queue after: %+v %v, want its 2 messages", st, err)
	}
}
