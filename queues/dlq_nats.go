package queues

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/topics"
)

// dlq_nats.go: NATS keeps a dead-letter topic as a subject, and its
// records as the messages of the JetStream stream that captures that
// subject. When no stream captures it, the first Produce creates one the
// way a handler's source subject gets one (ensureStream: named for the
// subject with dots as underscores, file storage), so nothing new is
// needed on the server and `nats stream view` or a Watermill subscriber
// reads the dead letters as ordinary messages.
//
// A record's offset is its stream sequence minus one: the sequence never
// changes once the server has stored the message, and only grows. A
// stream that captures other subjects too has their sequences as gaps, and
// Read returns only the messages whose subject is exactly the topic.
//
// A message is the record's value as data, each header as a header (the
// last of a repeated name), the header "key" for the key (none for a nil
// key), and a random _watermill_message_uuid, as docs/queues.md maps a
// NATS message. Its time is the one the server stored it with. NATS
// headers are text lines: a value's line breaks become spaces and its
// surrounding blanks go, and a name that is not an HTTP token is dropped.
// Headers named Nats-... are dropped too: JetStream acts on them (a
// Nats-Msg-Id seen before would have the dead letter silently discarded as
// a duplicate, a Nats-Expected-... would refuse it, a Nats-Rollup would
// purge the subject).
//
// Read uses an ephemeral pull consumer filtered on the subject, created
// at the first wanted sequence, and asks it for up to dlqBatch messages
// (and dlqMaxBytes) per request without waiting (no_wait), so a range
// costs a round trip per batch and never waits for messages that are not
// there. It stops at the end of the range, at the subject's last message
// when the read began, or when the server says nothing more is pending.
//
// A topic exists when a stream captures it and either holds a message of
// it or was made for it alone (ensureStream's name and only that subject:
// it stays, empty, after its messages expire). dlqDelete deletes a stream
// made for the topic alone, and otherwise purges the subject from the
// stream, which keeps the other subjects' messages.

const (
	// dlqBatch is the most messages one pull request asks for.
	dlqBatch = 1000
	// dlqMinBytes is the least a pull request asks for in bytes; a request
	// asks for at least the server's max payload, so that no single message
	// is too large for it.
	dlqMinBytes = 16 << 20
	// dlqWait bounds the wait for the server's whole answer to a request.
	dlqWait = 30 * time.Second
	// dlqPublishWindow is how many messages are published before their
	// acknowledgements are awaited (nats.go stalls at 4,000 in flight).
	dlqPublishWindow = 512
	// dlqAckWait bounds the wait for a window's acknowledgements, whatever
	// the caller's context.
	dlqAckWait = 30 * time.Second
)

// checkDLQSubject refuses a topic that is not a subject one can publish
// to: empty, with blanks or control characters, an empty token, or a
// wildcard.
func checkDLQSubject(topic string) error {
	if topic == "" || len(topic) > 1024 {
		return fmt.Errorf("nats dead-letter subject %q: empty or too long", topic)
	}
	for i := 0; i < len(topic); i++ {
		if c := topic[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("nats dead-letter subject %q: blanks or control characters", topic)
		}
	}
	for _, tok := range strings.Split(topic, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return fmt.Errorf("nats dead-letter subject %q: an empty token or a wildcard", topic)
		}
	}
	return nil
}

func unknownNATSTopic(topic string) error {
	return fmt.Errorf("nats subject %s: %w", topic, topics.ErrUnknownTopic)
}

func isNATSNotFound(err error) bool {
	return errors.Is(err, nats.ErrStreamNotFound) || errors.Is(err, nats.ErrNoMatchingStream)
}

// dlqStream is the stream that captures topic, or an error wrapping
// topics.ErrUnknownTopic when none does.
func (d *natsDriver) dlqStream(ctx context.Context, topic string) (*nats.Conn, nats.JetStreamContext, string, error) {
	if err := checkDLQSubject(topic); err != nil {
		return nil, nil, "", err
	}
	nc, js, err := d.conn()
	if err != nil {
		return nil, nil, "", err
	}
	stream, err := js.StreamNameBySubject(topic, nats.Context(ctx))
	if err != nil {
		if isNATSNotFound(err) {
			return nil, nil, "", unknownNATSTopic(topic)
		}
		return nil, nil, "", fmt.Errorf("finding the stream of %s: %w", topic, err)
	}
	return nc, js, stream, nil
}

// ownStream says whether the stream was made for topic alone, as
// ensureStream makes one.
func ownStream(info *nats.StreamInfo, topic string) bool {
	return info != nil && info.Config.Name == durableName(topic) && len(info.Config.Subjects) == 1 && info.Config.Subjects[0] == topic
}

func (d *natsDriver) dlqPartitions(ctx context.Context, topic string) (int, error) {
	if _, err := d.dlqOffsets(ctx, topic); err != nil {
		return 0, err
	}
	return 1, nil
}

func (d *natsDriver) dlqOffsets(ctx context.Context, topic string) (topics.Range, error) {
	nc, js, stream, err := d.dlqStream(ctx, topic)
	if err != nil {
		return topics.Range{}, err
	}
	last, err := js.GetLastMsg(stream, topic, nats.Context(ctx))
	switch {
	case errors.Is(err, nats.ErrMsgNotFound):
		info, err := js.StreamInfo(stream, nats.Context(ctx))
		if err != nil {
			if isNATSNotFound(err) {
				return topics.Range{}, unknownNATSTopic(topic)
			}
			return topics.Range{}, fmt.Errorf("stream %s: %w", stream, err)
		}
		if !ownStream(info, topic) {
			return topics.Range{}, unknownNATSTopic(topic)
		}
		end := int64(min(info.State.LastSeq, math.MaxInt64))
		return topics.Range{Start: end, End: end}, nil
	case isNATSNotFound(err):
		return topics.Range{}, unknownNATSTopic(topic)
	case err != nil:
		return topics.Range{}, fmt.Errorf("the last message of %s in stream %s: %w", topic, stream, err)
	}
	end := int64(min(last.Sequence, math.MaxInt64))
	first, found, err := natsFirstSeq(ctx, nc, stream, topic)
	if err != nil {
		return topics.Range{}, err
	}
	if !found || first > last.Sequence || first == 0 {
		// Removed since: nothing left.
		return topics.Range{Start: end, End: end}, nil
	}
	return topics.Range{Start: int64(first - 1), End: end}, nil
}

// natsFirstSeq is the sequence of the stream's first message of subject,
// through the stream's message-get API with next_by_subj (nats.go offers
// it only as a direct get, which the stream must allow).
func natsFirstSeq(ctx context.Context, nc *nats.Conn, stream, subject string) (uint64, bool, error) {
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
	}{1, subject})
	if err != nil {
		return 0, false, err
	}
	rctx, cancel := context.WithTimeout(ctx, dlqWait)
	defer cancel()
	resp, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return 0, false, fmt.Errorf("the first message of %s in stream %s: %w", subject, stream, err)
	}
	var r struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return 0, false, fmt.Errorf("the first message of %s in stream %s: %w", subject, stream, err)
	}
	if r.Error != nil {
		if r.Error.Code == 404 {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("the first message of %s in stream %s: %s (%d)", subject, stream, r.Error.Description, r.Error.ErrCode)
	}
	if r.Message == nil {
		return 0, false, nil
	}
	return r.Message.Seq, true, nil
}

func (d *natsDriver) dlqRead(ctx context.Context, topic string, from, to int64, fn func(topics.Message) bool) error {
	if from < 0 {
		from = 0
	}
	if from >= to {
		return nil
	}
	nc, js, stream, err := d.dlqStream(ctx, topic)
	if err != nil {
		return err
	}
	last, err := js.GetLastMsg(stream, topic, nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		if isNATSNotFound(err) {
			return unknownNATSTopic(topic)
		}
		return fmt.Errorf("the last message of %s in stream %s: %w", topic, stream, err)
	}
	// Offsets from <= off < to are sequences from+1 ... to; no further than
	// the subject's last message when the read began.
	start, stop := uint64(from)+1, min(uint64(to), last.Sequence)
	if start > stop {
		return nil
	}
	ci, err := js.AddConsumer(stream, &nats.ConsumerConfig{
		Description:   "sluice: reading dead letters of " + topic,
		DeliverPolicy: nats.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
		FilterSubject: topic,
		AckPolicy:     nats.AckNonePolicy,
		ReplayPolicy:  nats.ReplayInstantPolicy,
		// The server removes it by itself should the delete below fail.
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	}, nats.Context(ctx))
	if err != nil {
		if isNATSNotFound(err) {
			return unknownNATSTopic(topic)
		}
		return fmt.Errorf("reading %s: a consumer of stream %s: %w", topic, stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(stream, ci.Name, nats.Context(dctx))
	}()
	r := natsDLQReader{
		nc: nc, topic: topic, from: start, stop: stop, fn: fn,
		next:     "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + ci.Name,
		maxBytes: max(int64(dlqMinBytes), nc.MaxPayload()+64<<10),
	}
	for {
		done, err := r.batch(ctx, int(min(r.stop-r.from+1, dlqBatch)))
		if done || err != nil || r.from > r.stop {
			return err
		}
	}
}

// natsDLQReader reads a range of a subject through a pull consumer.
type natsDLQReader struct {
	nc       *nats.Conn
	topic    string
	next     string // the consumer's next-messages subject
	from     uint64 // the next sequence to read
	stop     uint64 // the last sequence to read
	maxBytes int64
	fn       func(topics.Message) bool
}

// batch asks the consumer for up to n messages and hands them over. It
// reports whether the read is over.
func (r *natsDLQReader) batch(ctx context.Context, n int) (bool, error) {
	inbox := r.nc.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return true, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The request's max_bytes bounds what comes; the default client bound
	// (64 MiB) could drop part of it.
	if err := sub.SetPendingLimits(n+16, int(min(2*r.maxBytes, math.MaxInt32))); err != nil {
		return true, err
	}
	req, err := json.Marshal(struct {
		Batch    int   `json:"batch"`
		MaxBytes int64 `json:"max_bytes"`
		NoWait   bool  `json:"no_wait"`
	}{n, r.maxBytes, true})
	if err != nil {
		return true, err
	}
	if err := r.nc.PublishRequest(r.next, inbox, req); err != nil {
		return true, fmt.Errorf("reading %s: %w", r.topic, err)
	}
	// One deadline for the whole answer: at most n messages and maxBytes
	// bytes, which the server sends at once.
	wctx, cancel := context.WithTimeout(ctx, dlqWait)
	defer cancel()
	for got := 0; got < n; {
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			return true, fmt.Errorf("reading %s: no answer from the server: %w", r.topic, err)
		}
		// A stored message comes with the consumer's reply subject
		// (its metadata); the server's statuses come without one, so a
		// stored message that looks like a status is still a message.
		if m.Reply == "" {
			switch status := m.Header.Get("Status"); status {
			case "100": // a heartbeat or flow control
				continue
			case "404", "408": // nothing more now
				return true, nil
			default:
				return true, fmt.Errorf("reading %s: nats status %s %s", r.topic, status, m.Header.Get("Description"))
			}
		}
		got++
		meta, err := m.Metadata()
		if err != nil || meta.Sequence.Stream == 0 {
			continue // not the consumer's: nothing to place it by
		}
		seq := meta.Sequence.Stream
		r.from = seq + 1
		if seq > r.stop {
			return true, nil
		}
		if m.Subject == r.topic && seq <= math.MaxInt64 {
			if !r.fn(natsDLQMessage(m, seq, meta.Timestamp)) {
				return true, nil
			}
		}
		if seq >= r.stop || meta.NumPending == 0 {
			return true, nil
		}
	}
	return false, nil
}

// natsDLQMessage is a stored message as a record at sequence seq. Its
// headers are bounded as Decode bounds them; JetStream's own are left out,
// as natsUnmarshaler leaves them out.
func natsDLQMessage(m *nats.Msg, seq uint64, ts time.Time) topics.Message {
	out := topics.Message{Partition: 0, Offset: int64(seq - 1), Time: ts, Value: m.Data}
	names := make([]string, 0, len(m.Header))
	for k := range m.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vs := m.Header[k]
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		switch k {
		case KeyHeader:
			if len(v) <= maxHeaderBytes {
				out.Key = []byte(v)
			}
			continue
		case wmnats.WatermillUUIDHdr, nats.MsgIdHdr, nats.ExpectedLastMsgIdHdr, nats.ExpectedStreamHdr, nats.ExpectedLastSubjSeqHdr, nats.ExpectedLastSeqHdr:
			continue
		}
		if len(out.Headers) >= maxHeaders || len(k)+len(v) > maxHeaderBytes || k == "" {
			continue
		}
		out.Headers = append(out.Headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	return out
}

// natsDLQMsg is the message of a record (see the mapping above).
func natsDLQMsg(topic string, r topics.Record) *nats.Msg {
	m := nats.NewMsg(topic)
	m.Data = r.Value
	for _, h := range r.Headers {
		if h.Key == "" || h.Key == KeyHeader || h.Key == wmnats.WatermillUUIDHdr || strings.HasPrefix(strings.ToLower(h.Key), "nats-") {
			continue
		}
		m.Header.Set(h.Key, string(h.Value))
	}
	if r.Key != nil {
		m.Header.Set(KeyHeader, string(r.Key))
	}
	m.Header.Set(wmnats.WatermillUUIDHdr, watermill.NewUUID())
	return m
}

func (d *natsDriver) dlqProduce(ctx context.Context, topic string, recs []topics.Record) ([]topics.Produced, error) {
	if err := checkDLQSubject(topic); err != nil {
		return nil, err
	}
	_, js, err := d.conn()
	if err != nil {
		return nil, err
	}
	if err := orAfter(ctx, func() error { _, err := ensureStream(js, topic); return err }); err != nil {
		return nil, err
	}
	out := make([]topics.Produced, 0, len(recs))
	for i := 0; i < len(recs); i += dlqPublishWindow {
		window := recs[i:min(i+dlqPublishWindow, len(recs))]
		futs := make([]nats.PubAckFuture, 0, len(window))
		for _, r := range window {
			f, err := js.PublishMsgAsync(natsDLQMsg(topic, r))
			if err != nil {
				return nil, fmt.Errorf("publishing to %s: %w", topic, err)
			}
			futs = append(futs, f)
		}
		timeout := time.NewTimer(dlqAckWait)
		for _, f := range futs {
			select {
			case pa := <-f.Ok():
				if pa.Sequence == 0 || pa.Sequence > math.MaxInt64 {
					timeout.Stop()
					return nil, fmt.Errorf("publishing to %s: stream %s acknowledged sequence %d", topic, pa.Stream, pa.Sequence)
				}
				out = append(out, topics.Produced{Partition: 0, Offset: int64(pa.Sequence - 1)})
			case err := <-f.Err():
				timeout.Stop()
				return nil, fmt.Errorf("publishing to %s: %w", topic, err)
			case <-ctx.Done():
				timeout.Stop()
				return nil, ctx.Err()
			case <-timeout.C:
				return nil, fmt.Errorf("publishing to %s: no acknowledgement within %s", topic, dlqAckWait)
			}
		}
		timeout.Stop()
	}
	return out, nil
}

func (d *natsDriver) dlqDelete(ctx context.Context, topic string) error {
	_, js, stream, err := d.dlqStream(ctx, topic)
	if errors.Is(err, topics.ErrUnknownTopic) {
		return nil
	}
	if err != nil {
		return err
	}
	info, err := js.StreamInfo(stream, nats.Context(ctx))
	if isNATSNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	if ownStream(info, topic) {
		if err := js.DeleteStream(stream, nats.Context(ctx)); err != nil && !isNATSNotFound(err) {
			return fmt.Errorf("deleting stream %s: %w", stream, err)
		}
		return nil
	}
	if err := js.PurgeStream(stream, &nats.StreamPurgeRequest{Subject: topic}); err != nil && !isNATSNotFound(err) {
		return fmt.Errorf("purging %s from stream %s: %w", topic, stream, err)
	}
	return nil
}
