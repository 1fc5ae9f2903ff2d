package queues

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/vmihailenco/msgpack"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// dlq_redis.go: a dead-letter topic on Redis is a stream whose key is the
// topic's name, created by its first XADD.
//
// Sluice appends with the id 0-*: milliseconds 0, and a sequence the server
// increments atomically (Redis 7.0 or later). The entries are so numbered
// 0-1, 0-2, ... with no gaps but the ones deleted, and a record's offset is
// its sequence minus one: the id is the offset, it never changes, and a
// range of offsets is one XRANGE from 0-(from+1) to 0-to, read in batches
// of dlqRedisBatch entries. An entry with a time-based id (another
// client's XADD with *) is outside every such range and never read; once
// there is one, though, no 0-* id can follow it (a stream's ids only
// grow), and appending fails with an error that says so.
//
// Each entry has the fields a watermill-redisstream publisher writes, so
// that its subscriber (and Sluice's, see redis.go) reads it as a message,
// and redis-cli XRANGE shows it plainly:
//   - payload: the value;
//   - _watermill_message_uuid: a new UUID;
//   - metadata: the headers, and the key as "key" when there is one,
//     msgpack-encoded as Watermill encodes its metadata;
//   - key: the key, when there is one;
//   - sluice_time: when it was written, in Unix milliseconds, since an id
//     of 0-n carries no time.
//
// A record is read back through the same mapping as a handler's message
// (redisUnmarshaller, then Decode), so whatever another client wrote is
// read as a handler would have seen it: bounded headers, and a metadata
// field that does not decode kept as the header "metadata". An entry that
// cannot be read at all is skipped.

// dlqRedisBatch is how many entries one XRANGE of a Read fetches.
const dlqRedisBatch = 1000

// dlqRedisTimeField is the field that carries a record's time.
const dlqRedisTimeField = "sluice_time"

// zeroID is the entry id 0-seq.
func zeroID(seq uint64) string { return "0-" + strconv.FormatUint(seq, 10) }

// dlqRedisLastID is the greatest id with milliseconds 0.
var dlqRedisLastID = zeroID(math.MaxUint64)

// parseZeroID is the sequence of an id 0-seq; ok is false for any other.
func parseZeroID(id string) (seq uint64, ok bool) {
	rest, found := strings.CutPrefix(id, "0-")
	if !found {
		return 0, false
	}
	seq, err := strconv.ParseUint(rest, 10, 64)
	return seq, err == nil
}

func (d *redisDriver) dlqPartitions(ctx context.Context, topic string) (int, error) {
	typ, err := d.rc.Type(ctx, topic).Result()
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream %s: %w", topic, err)
	}
	switch typ {
	case "none":
		return 0, fmt.Errorf("dead-letter stream %s: %w", topic, topics.ErrUnknownTopic)
	case "stream":
		return 1, nil
	}
	return 0, fmt.Errorf("dead-letter stream %s: the key holds a %s, not a stream", topic, typ)
}

// dlqOffsets: Start is the first 0-n entry's offset; End is one past the
// last id the stream generated, which stays put when its last entries are
// deleted, so that an offset is never given twice.
func (d *redisDriver) dlqOffsets(ctx context.Context, topic string) (topics.Range, error) {
	var info *redis.XInfoStreamCmd
	var first *redis.XMessageSliceCmd
	_, err := d.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		info = p.XInfoStream(ctx, topic)
		first = p.XRangeN(ctx, topic, zeroID(1), dlqRedisLastID, 1)
		return nil
	})
	if err != nil {
		if isRedisNoKey(info.Err()) {
			return topics.Range{}, fmt.Errorf("dead-letter stream %s: %w", topic, topics.ErrUnknownTopic)
		}
		return topics.Range{}, fmt.Errorf("dead-letter stream %s: %w", topic, err)
	}
	var end uint64
	if seq, ok := parseZeroID(info.Val().LastGeneratedID); ok {
		end = seq
	} else {
		// Another client's entry came last: ours end at the last 0-n.
		last, err := d.rc.XRevRangeN(ctx, topic, dlqRedisLastID, zeroID(1), 1).Result()
		if err != nil {
			return topics.Range{}, fmt.Errorf("dead-letter stream %s: %w", topic, err)
		}
		if len(last) > 0 {
			end, _ = parseZeroID(last[0].ID)
		}
	}
	end = min(end, math.MaxInt64)
	start := end
	if ms := first.Val(); len(ms) > 0 {
		if seq, ok := parseZeroID(ms[0].ID); ok && seq >= 1 && seq-1 < start {
			start = seq - 1
		}
	}
	return topics.Range{Start: int64(start), End: int64(end)}, nil
}

func isRedisNoKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}

func (d *redisDriver) dlqRead(ctx context.Context, topic string, from, to int64, fn func(topics.Message) bool) error {
	from = max(from, 0)
	if from >= to {
		return nil
	}
	next, last := uint64(from)+1, uint64(to) // sequences of from and to-1
	for next <= last {
		ents, err := d.rc.XRangeN(ctx, topic, zeroID(next), zeroID(last), dlqRedisBatch).Result()
		if err != nil {
			return fmt.Errorf("reading dead-letter stream %s: %w", topic, err)
		}
		asked := next
		for _, e := range ents {
			seq, ok := parseZeroID(e.ID)
			if !ok || seq < next || seq > last {
				continue // not one of ours (the range holds none)
			}
			next = seq + 1
			m, ok := redisDLQMessage(e, int64(seq-1))
			if !ok {
				continue
			}
			if !fn(m) {
				return nil
			}
		}
		if len(ents) < dlqRedisBatch {
			return nil
		}
		if next == asked {
			// A full batch that did not move us on: the server answers
			// something other than what was asked, and would again.
			return fmt.Errorf("reading dead-letter stream %s: XRANGE from %s returned no entry in range", topic, zeroID(asked))
		}
	}
	return nil
}

// redisDLQMessage reads an entry as a handler reads a message; ok is false
// for an entry it cannot read (it never panics).
func redisDLQMessage(e redis.XMessage, offset int64) (m topics.Message, ok bool) {
	defer func() {
		if recover() != nil {
			m, ok = topics.Message{}, false
		}
	}()
	values := make(map[string]any, len(e.Values))
	var at time.Time
	for k, v := range e.Values {
		if k == dlqRedisTimeField {
			if s, isText := v.(string); isText {
				if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms > 0 && ms < 1<<50 {
					at = time.UnixMilli(ms)
				}
			}
			continue
		}
		values[k] = v
	}
	wm, err := redisUnmarshaller{}.Unmarshal(values)
	if err != nil || wm == nil {
		return topics.Message{}, false
	}
	var hm handlers.Message
	Decode(wm, &hm)
	m = topics.Message{Partition: 0, Offset: offset, Time: at, Key: hm.Key, Value: hm.Value}
	if len(hm.Headers) > 0 {
		m.Headers = make([]kafka.Header, len(hm.Headers))
		for i, h := range hm.Headers {
			m.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	return m, true
}

// redisDLQFields are an entry's fields for r (see the layout above).
func redisDLQFields(r topics.Record, now string) ([]any, error) {
	md := make(map[string]string, len(r.Headers)+1)
	for _, h := range r.Headers {
		md[h.Key] = string(h.Value)
	}
	if r.Key != nil {
		md[KeyHeader] = string(r.Key)
	}
	var enc []byte
	if len(md) > 0 {
		var err error
		if enc, err = msgpack.Marshal(md); err != nil {
			return nil, fmt.Errorf("encoding metadata: %w", err)
		}
	}
	vals := []any{
		"payload", r.Value,
		redisstream.UUIDHeaderKey, watermill.NewUUID(),
		"metadata", enc,
	}
	if r.Key != nil {
		vals = append(vals, KeyHeader, r.Key)
	}
	return append(vals, dlqRedisTimeField, now), nil
}

// dlqProduce appends recs in one MULTI/EXEC, so that they are numbered
// together; it returns once EXEC has answered (Redis then has them, as
// durably as its own persistence settings make them).
func (d *redisDriver) dlqProduce(ctx context.Context, topic string, recs []topics.Record) ([]topics.Produced, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	args := make([]*redis.XAddArgs, len(recs))
	for i, r := range recs {
		vals, err := redisDLQFields(r, now)
		if err != nil {
			return nil, fmt.Errorf("dead-letter stream %s, record %d: %w", topic, i, err)
		}
		args[i] = &redis.XAddArgs{Stream: topic, ID: "0-*", Values: vals}
	}
	cmds := make([]*redis.StringCmd, len(recs))
	_, err := d.rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, a := range args {
			cmds[i] = p.XAdd(ctx, a)
		}
		return nil
	})
	if err != nil {
		return nil, d.dlqAppendError(ctx, topic, err)
	}
	out := make([]topics.Produced, len(recs))
	for i, c := range cmds {
		seq, ok := parseZeroID(c.Val())
		if !ok || seq == 0 || seq > math.MaxInt64 {
			return nil, fmt.Errorf("dead-letter stream %s: XADD 0-* gave the id %q", topic, c.Val())
		}
		out[i] = topics.Produced{Partition: 0, Offset: int64(seq - 1)}
	}
	return out, nil
}

// dlqAppendError explains why XADD 0-* failed, when the reason is known.
func (d *redisDriver) dlqAppendError(ctx context.Context, topic string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "equal or smaller than the target stream top item"):
		last := "an entry"
		if info, ierr := d.rc.XInfoStream(ctx, topic).Result(); ierr == nil {
			last = "the entry " + info.LastGeneratedID
		}
		return fmt.Errorf("dead-letter stream %s: cannot append: another client added %s with a time-based id (XADD *), "+
			"and dead letters are numbered 0-1, 0-2, ... below every such id, since a stream's ids only grow; "+
			"deleting those entries does not help (the stream remembers its last id): use another dead-letter topic, "+
			"or delete this stream once its dead letters are dealt with: %w", topic, last, err)
	case strings.Contains(msg, "Invalid stream ID"):
		return fmt.Errorf("dead-letter stream %s: XADD 0-* needs Redis 7.0 or later: %w", topic, err)
	case strings.HasPrefix(msg, "WRONGTYPE"):
		return fmt.Errorf("dead-letter stream %s: the key holds something other than a stream: %w", topic, err)
	}
	return fmt.Errorf("dead-letter stream %s: %w", topic, err)
}

func (d *redisDriver) dlqDelete(ctx context.Context, topic string) error {
	if err := d.rc.Del(ctx, topic).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("deleting dead-letter stream %s: %w", topic, err)
	}
	return nil
}
