package queues

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/topics"
)

// dlq_nats_test.go: the NATS dead-letter log beyond the common contract:
// what other clients write to the subject, a stream shared with other
// subjects, and a read of 20,000 records.

func natsDLQ(t *testing.T) (*natsDriver, *nats.Conn, nats.JetStreamContext) {
	t.Helper()
	d, err := newNATS(suiteConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.close() })
	nc, js, err := d.conn()
	if err != nil {
		t.Fatal(err)
	}
	return d, nc, js
}

func natsReadAll(t *testing.T, ctx context.Context, d *natsDriver, topic string, from, to int64) []topics.Message {
	t.Helper()
	var out []topics.Message
	if err := d.dlqRead(ctx, topic, from, to, func(m topics.Message) bool { out = append(out, m); return true }); err != nil {
		t.Fatalf("Read [%d, %d): %v", from, to, err)
	}
	return out
}

// rawHPUB writes a message with the header block hdr as it is, as a client
// other than nats.go may (malformed or not), and waits for the server.
func rawHPUB(t *testing.T, subject string, hdr, payload []byte) {
	t.Helper()
	u, err := url.Parse(suiteConfig().NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nHPUB %s %d %d\r\n", subject, len(hdr), len(hdr)+len(payload))
	_, _ = c.Write(hdr)
	_, _ = c.Write(payload)
	_, _ = c.Write([]byte("\r\nPING\r\n"))
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Logf("raw HPUB: %v", err)
			return
		}
		if strings.HasPrefix(l, "PONG") {
			return
		}
		if strings.HasPrefix(l, "-ERR") {
			t.Logf("raw HPUB: %s", strings.TrimSpace(l))
			return
		}
	}
}

// TestNATSDeadLetterHostileRecords: messages that any client can put on a
// dead-letter subject (a malformed header block, one that looks like a
// server status, hundreds of headers, huge ones, a repeated key) are read
// bounded, without stopping the read or panicking, and the records around
// them are intact.
func TestNATSDeadLetterHostileRecords(t *testing.T) {
	d, nc, _ := natsDLQ(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := dlqTestTopic()
	defer func() { _ = d.dlqDelete(context.Background(), topic) }()

	if _, err := d.dlqProduce(ctx, topic, []topics.Record{dlqRecord(0)}); err != nil {
		t.Fatal(err)
	}
	rawHPUB(t, topic, []byte("garbage\r\n\r\n"), []byte("bad header block"))
	rawHPUB(t, topic, []byte("NATS/1.0 404 No Messages\r\n\r\n"), nil)
	rawHPUB(t, topic, []byte("NATS/1.0\r\nno colon here\r\nkey: k\r\n\r\n"), []byte("x"))
	many := nats.NewMsg(topic)
	for i := 0; i < 400; i++ {
		many.Header.Set(fmt.Sprintf("h-%03d", i), "v")
	}
	many.Header.Set("huge", strings.Repeat("x", 100<<10))
	many.Header["key"] = []string{"k1", "k2"}
	many.Header.Set(nats.MsgIdHdr, "dup")
	if err := nc.PublishMsg(many); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(topic, nil); err != nil { // empty, no headers
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.dlqProduce(ctx, topic, []topics.Record{dlqRecord(1)}); err != nil {
		t.Fatal(err)
	}

	rg, err := d.dlqOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	all := natsReadAll(t, ctx, d, topic, rg.Start, rg.End)
	if len(all) < 3 {
		t.Fatalf("read %d records, want at least the two produced and one other", len(all))
	}
	first, last := all[0], all[len(all)-1]
	if string(first.Value) != string(dlqRecord(0).Value) || string(first.Key) != "key-0" || string(last.Value) != string(dlqRecord(1).Value) || len(last.Key) != 0 {
		t.Fatalf("produced records around the others: first %q key %q, last %q key %q", first.Value, first.Key, last.Value, last.Key)
	}
	for i, m := range all {
		if i > 0 && m.Offset <= all[i-1].Offset {
			t.Fatalf("offsets not growing: %v", offsets(all))
		}
		if len(m.Headers) > maxHeaders {
			t.Fatalf("record at %d: %d headers, want at most %d", m.Offset, len(m.Headers), maxHeaders)
		}
		for _, h := range m.Headers {
			if len(h.Key)+len(h.Value) > maxHeaderBytes || h.Key == nats.MsgIdHdr {
				t.Fatalf("record at %d: header %s of %d bytes kept", m.Offset, h.Key, len(h.Value))
			}
		}
	}
	t.Logf("%d records read: offsets %v", len(all), offsets(all))
}

// TestNATSDeadLetterSharedStream: a dead-letter subject captured by a
// stream with other subjects reads only its own messages, at their
// sequences, does not exist until it has one, and is deleted by purging
// it alone.
func TestNATSDeadLetterSharedStream(t *testing.T) {
	d, nc, js := natsDLQ(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prefix := strings.ReplaceAll(uniqueName("wmdlqshared"), "-", "_")
	stream := prefix
	if _, err := js.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}, Storage: nats.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(stream) }()
	topic, other := prefix+".orders.dlq", prefix+".orders"

	if _, err := d.dlqPartitions(ctx, topic); !errors.Is(err, topics.ErrUnknownTopic) {
		t.Fatalf("Partitions of a subject without messages: %v, want topics.ErrUnknownTopic", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := js.Publish(other, []byte("other")); err != nil {
			t.Fatal(err)
		}
		p, err := d.dlqProduce(ctx, topic, []topics.Record{dlqRecord(i)})
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(2*i + 1); p[0].Offset != want {
			t.Fatalf("record %d at %d, want %d (sequence %d)", i, p[0].Offset, want, want+1)
		}
	}
	if _, err := js.Publish(other, []byte("other")); err != nil {
		t.Fatal(err)
	}
	if info, err := js.StreamInfo(stream); err != nil || info.Config.Subjects[0] != prefix+".>" {
		t.Fatalf("the shared stream was changed or replaced: %v", err)
	}
	rg, err := d.dlqOffsets(ctx, topic)
	if err != nil || rg != (topics.Range{Start: 1, End: 6}) {
		t.Fatalf("Offsets: %+v, %v; want [1, 6)", rg, err)
	}
	all := natsReadAll(t, ctx, d, topic, 0, math.MaxInt64)
	if len(all) != 3 || all[0].Offset != 1 || all[1].Offset != 3 || all[2].Offset != 5 {
		t.Fatalf("Read: offsets %v, want [1 3 5]", offsets(all))
	}
	if sub := natsReadAll(t, ctx, d, topic, 2, 5); len(sub) != 1 || sub[0].Offset != 3 {
		t.Fatalf("Read [2, 5): offsets %v, want [3]", offsets(sub))
	}

	// The message is one Watermill and the handler's source read as such.
	raw, err := js.GetLastMsg(stream, topic)
	if err != nil {
		t.Fatal(err)
	}
	wm, _ := natsUnmarshaler{}.Unmarshal(&nats.Msg{Subject: topic, Header: raw.Header, Data: raw.Data})
	if wm.UUID == "" || raw.Header.Get(wmnats.WatermillUUIDHdr) == "" || wm.Metadata.Get(KeyHeader) != "key-2" || wm.Metadata.Get("sluice-dlq-attempts") != "3" {
		t.Fatalf("as a Watermill message: uuid %q, metadata %v", wm.UUID, wm.Metadata)
	}

	if err := d.dlqDelete(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := d.dlqPartitions(ctx, topic); !errors.Is(err, topics.ErrUnknownTopic) {
		t.Fatalf("Partitions after the delete: %v, want topics.ErrUnknownTopic", err)
	}
	info, err := js.StreamInfo(stream)
	if err != nil || info.State.Msgs != 4 {
		t.Fatalf("the other subject after the delete: %v messages, %v; want 4", info.State.Msgs, err)
	}
	_ = nc
}

// TestNATSDeadLetterLargeRead: 20,000 records read in well under a few
// seconds, a read of a huge range stops when fn says so, and the headers
// NATS cannot carry as they are come back as documented.
func TestNATSDeadLetterLargeRead(t *testing.T) {
	d, _, _ := natsDLQ(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := dlqTestTopic()
	defer func() { _ = d.dlqDelete(context.Background(), topic) }()

	const n = 20000
	recs := make([]topics.Record, n)
	for i := range recs {
		recs[i] = dlqRecord(i)
	}
	recs[0].Headers = append(recs[0].Headers,
		kafka.Header{Key: "multi-line", Value: []byte("line 1\nline 2")},
		kafka.Header{Key: "Nats-Msg-Id", Value: []byte("would be a duplicate")},
		kafka.Header{Key: "Nats-Rollup", Value: []byte("sub")})
	start := time.Now()
	if _, err := d.dlqProduce(ctx, topic, recs); err != nil {
		t.Fatal(err)
	}
	t.Logf("produced %d in %s", n, time.Since(start))

	start = time.Now()
	all := natsReadAll(t, ctx, d, topic, 0, math.MaxInt64)
	took := time.Since(start)
	t.Logf("read %d in %s", len(all), took)
	if len(all) != n {
		t.Fatalf("read %d records, want %d", len(all), n)
	}
	// Measured on localhost: 0.34 s, 1.3 s with -race on a busy machine.
	if took > 5*time.Second {
		t.Fatalf("reading %d records took %s", n, took)
	}
	for i, m := range all {
		if m.Offset != int64(i) || string(m.Value) != string(recs[i].Value) {
			t.Fatalf("record %d at %d: %q", i, m.Offset, m.Value)
		}
	}
	h := headerMap(all[0].Headers)
	if h["multi-line"] != "line 1 line 2" {
		t.Fatalf("a multi-line header: %q", h["multi-line"])
	}

	calls := 0
	start = time.Now()
	if err := d.dlqRead(ctx, topic, 0, math.MaxInt64, func(topics.Message) bool { calls++; return calls < 10 }); err != nil || calls != 10 {
		t.Fatalf("a stopped read: %d calls, %v", calls, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a read stopped after 10 took %s", took)
	}
}
