// Package dlq is the dead-letter queue: it writes messages a handler could
// not handle to the handler's dead-letter topic (with why and where from),
// lists and shows them, replays them to that handler alone, and discards
// them. Entry states (dead, replayed, discarded) live in a compacted topic
// every node reads, so they are durable and the same everywhere.
package dlq

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/ktable"
	"github.com/sluicehq/sluice/topics"
)

// StateTopic keeps entry states.
const StateTopic = "__sluice_dlq_state"

// Headers recorded on every dead-letter record, beside the original ones.
const (
	HeaderFailedAt     = "sluice-dlq-source" // topic/partition/offset
	HeaderHandler      = "sluice-dlq-handler"
	HeaderAttempts     = "sluice-dlq-attempts"
	HeaderFirstFailure = "sluice-dlq-first-failure"
	HeaderLastFailure  = "sluice-dlq-last-failure"
	HeaderError        = "sluice-dlq-error"
	HeaderStatus       = "sluice-dlq-status"
	// HeaderReplayOf is set on the dead letter of a replayed message that
	// failed again: the qualified id ("<dlq topic>/<partition>-<offset>")
	// of the entry whose replay it was. It makes the new failure an entry
	// of its own rather than a duplicate of the first.
	HeaderReplayOf = "sluice-dlq-replay-of"
	headerPrefix   = "sluice-dlq-"
)

// Entry states.
const (
	StateDead      = "dead"
	StateReplayed  = "replayed"
	StateDiscarded = "discarded"
)

// maxErrorText bounds the error text kept with an entry.
const maxErrorText = 1024

// maxReplayOf bounds the replay-of id carried over (a topic of up to 249
// characters, a slash and a partition-offset).
const maxReplayOf = 512

// ErrNotFound is returned for an entry id that does not exist.
var ErrNotFound = errors.New("dead-letter entry not found")

// ErrNotDead is returned by Replay for an entry named by id that was
// already replayed or discarded, unless the selection forces it.
var ErrNotDead = errors.New("dead-letter entry is not dead")

// Queue is the dead-letter queue of every handler. Safe for concurrent use.
type Queue struct {
	tc *topics.Client
	// logs keep the dead-letter topics of queue handlers on their own
	// servers, by source (UseLog).
	logsMu sync.RWMutex
	logs   map[handlers.Source]Log
	states *ktable.Table
	log    *slog.Logger
	// invalid counts skipped state records.
	invalid atomic.Uint64
	// ScanLimit bounds how many of the newest records per partition a
	// listing reads. Default 20,000.
	ScanLimit int64
}

// New returns a queue; Run must be running for states to be read. dialer
// (nil for kafka-go's default) reads the state table: it carries the
// connections' TLS and SASL.
func New(tc *topics.Client, brokers []string, dialer *kafka.Dialer, log *slog.Logger) *Queue {
	if log == nil {
		log = slog.Default()
	}
	q := &Queue{tc: tc, log: log, ScanLimit: 20000}
	q.states = ktable.New(ktable.Config{Topics: tc, Brokers: brokers, Dialer: dialer, Topic: StateTopic, Logger: log,
		Decode: q.checkState})
	return q
}

// Log is where a dead-letter topic's records live: the node's Kafka
// (topics.Client), or a queue server's log (queues.DeadLetterLog), which
// has the shape of a one-partition topic.
type Log interface {
	Partitions(ctx context.Context, topic string) (int, error)
	Offsets(ctx context.Context, topic string, partitions int) (map[int]topics.Range, error)
	Read(ctx context.Context, topic string, partition int, from, to int64, fn func(topics.Message) bool) error
	Produce(ctx context.Context, topic string, recs []topics.Record) ([]topics.Produced, error)
}

var _ Log = (*topics.Client)(nil)

// UseLog keeps the dead-letter topics of source's server ("<source>:<name>",
// see handlers.SplitDeadLetterTopic) in l.
func (q *Queue) UseLog(source handlers.Source, l Log) {
	q.logsMu.Lock()
	defer q.logsMu.Unlock()
	if q.logs == nil {
		q.logs = map[handlers.Source]Log{}
	}
	q.logs[source] = l
}

// logOf returns where topic lives and its name there.
func (q *Queue) logOf(topic string) (Log, string, error) {
	src, name := handlers.SplitDeadLetterTopic(topic)
	if src == handlers.SourceKafka {
		return q.tc, topic, nil
	}
	q.logsMu.RLock()
	l := q.logs[src]
	q.logsMu.RUnlock()
	if l == nil {
		return nil, "", fmt.Errorf("dead-letter topic %q: this node reaches no %s server", topic, src)
	}
	return l, name, nil
}

// State keys. An entry's state is keyed by the handler, the dead-letter
// topic and the record's partition and offset, so that entries of two
// topics a handler used (its deadLetter.topic changed, or it was deleted
// and re-created with another) never share a state:
//
//	<handler>/<dlq topic>/<partition>-<offset>   an entry's state
//	<handler>/<partition>-<offset>               legacy, without the topic
//	topic:<handler>/<dlq topic>                  a dead-letter topic the handler left
//
//	job:<handler>/<job id>                       a replay or purge job (Job as JSON)
//
// Legacy keys were written by versions that did not record the topic; they
// apply only as explained at legacyApplies.
const (
	topicKeyPrefix = "topic:"
	jobKeyPrefix   = "job:"
)

// StateRetired is the value's state of a topic key: the handler stopped
// using that dead-letter topic (it changed its deadLetter.topic or was
// deleted); its entries stay reachable with ?topic=.
const StateRetired = "retired"

type stateKeyKind int

const (
	keyEntry stateKeyKind = iota
	keyLegacy
	keyTopic
	keyJob
)

// parseStateKey splits a state key and checks every part strictly.
func parseStateKey(key string) (kind stateKeyKind, handler, topic, id string, err error) {
	if rest, ok := strings.CutPrefix(key, topicKeyPrefix); ok {
		handler, topic, ok = strings.Cut(rest, "/")
		if !ok {
			return 0, "", "", "", errors.New("a topic key needs handler/topic")
		}
		if err := handlers.ValidateName(handler); err != nil {
			return 0, "", "", "", err
		}
		return keyTopic, handler, topic, "", CheckTopic(topic)
	}
	if rest, ok := strings.CutPrefix(key, jobKeyPrefix); ok {
		handler, id, ok = strings.Cut(rest, "/")
		if !ok {
			return 0, "", "", "", errors.New("a job key needs handler/id")
		}
		if err := handlers.ValidateName(handler); err != nil {
			return 0, "", "", "", err
		}
		if !validJobID(id) {
			return 0, "", "", "", fmt.Errorf("%q is not a job id", id)
		}
		return keyJob, handler, "", id, nil
	}
	parts := strings.Split(key, "/")
	switch len(parts) {
	case 2:
		kind, handler, id = keyLegacy, parts[0], parts[1]
	case 3:
		kind, handler, topic, id = keyEntry, parts[0], parts[1], parts[2]
		if err := CheckTopic(topic); err != nil {
			return 0, "", "", "", err
		}
	default:
		return 0, "", "", "", errors.New("not handler/topic/partition-offset")
	}
	if err := handlers.ValidateName(handler); err != nil {
		return 0, "", "", "", err
	}
	if _, _, err := parseID(id); err != nil {
		return 0, "", "", "", err
	}
	return kind, handler, topic, id, nil
}

// CheckTopic checks that topic may be a dead-letter topic, as a spec's
// deadLetter.topic must be: a Kafka topic name, or "<source>:<name>" on a
// queue server that accepts the name, outside Sluice's own names (those
// starting with __).
func CheckTopic(topic string) error {
	src, _ := handlers.SplitDeadLetterTopic(topic)
	// The handler's own topic is not known here: "" never matches.
	return handlers.ValidateDeadLetterTopic("topic", src, topic, "")
}

// checkState admits a state record only if its key is one of the forms
// above, every part valid, and its value is a known state for that kind
// of key: the topic is writable by anyone with a Kafka client, and a
// record that is not one of ours must not change what an entry is. A
// skipped record is logged once (each is read once per node) and counted.
func (q *Queue) checkState(key string, value []byte, offset int64) bool {
	kind, handler, _, id, err := parseStateKey(key)
	if err == nil && value != nil && kind == keyJob {
		if err = checkJob(handler, id, value); err == nil && q.staleJob(key, value) {
			return false // not invalid: a late write of a job that has ended
		}
	} else if err == nil && value != nil {
		var st stateRecord
		dec := json.NewDecoder(bytes.NewReader(value))
		dec.DisallowUnknownFields()
		switch err = dec.Decode(&st); {
		case err != nil:
		case !atEOF(dec):
			err = errors.New("trailing data after the state")
		case kind == keyTopic && st.State != StateRetired:
			err = fmt.Errorf("state %q on a topic key", st.State)
		case kind != keyTopic && st.State != StateDead && st.State != StateReplayed && st.State != StateDiscarded:
			err = fmt.Errorf("unknown state %q", st.State)
		case st.At.IsZero():
			err = errors.New("no time")
		}
	}
	if err != nil {
		q.invalid.Add(1)
		q.log.Error("skipping invalid dead-letter state record", "offset", offset, "key", key, "err", err)
		return false
	}
	return true
}

// atEOF reports whether dec has nothing but white space left. (Decoder.More
// is no test of that at the top level: it reports false before a stray
// '}' or ']'.)
func atEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return err == io.EOF
}

// InvalidStates counts the state records this node skipped as invalid.
func (q *Queue) InvalidStates() uint64 { return q.invalid.Load() }

// Run tails the entry states until ctx is done.
func (q *Queue) Run(ctx context.Context) error { return q.states.Run(ctx) }

// Loaded reports whether the entry states have caught up.
func (q *Queue) Loaded() (bool, error) { return q.states.Loaded() }

// The queue is the engine's dead-letter sink.
var _ consumers.DeadLetterer = (*Queue)(nil)

// DeadLetter writes m to topic with the failure recorded in headers. It
// returns once all in-sync replicas have it.
func (q *Queue) DeadLetter(ctx context.Context, topic string, m *handlers.Message, f consumers.Failure) error {
	errText := "unknown error"
	if f.Err != nil {
		errText = f.Err.Error()
	}
	if len(errText) > maxErrorText {
		errText = strings.ToValidUTF8(errText[:maxErrorText], "") + "…"
	}
	extra := []kafka.Header{
		{Key: HeaderFailedAt, Value: []byte(m.ID())},
		{Key: HeaderHandler, Value: []byte(f.Handler)},
		{Key: HeaderAttempts, Value: []byte(strconv.Itoa(f.Attempts))},
		{Key: HeaderFirstFailure, Value: []byte(f.FirstFailure.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderLastFailure, Value: []byte(f.LastFailure.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderError, Value: []byte(errText)},
	}
	if f.Status != 0 {
		extra = append(extra, kafka.Header{Key: HeaderStatus, Value: []byte(strconv.Itoa(f.Status))})
	}
	// A replayed message keeps its source id (the handler sees the original
	// coordinates), so what tells its new failure from a duplicate record
	// of the first is the entry it is a replay of.
	if v, ok := m.Header(handlers.HeaderReplayOf); ok && len(v) > 0 && len(v) <= maxReplayOf && utf8.Valid(v) {
		extra = append(extra, kafka.Header{Key: HeaderReplayOf, Value: v})
	}
	// Sluice's own headers of an earlier hop (a replay, a delay topic, a
	// dead letter) do not travel on.
	keep := func(k string) bool {
		return !strings.HasPrefix(k, headerPrefix) && !strings.HasPrefix(k, "sluice-retry-") &&
			k != handlers.HeaderOriginal && k != handlers.HeaderReplayOf
	}
	rec := topics.Forward(m.Key, m.Value, topics.KafkaHeaders(m.Headers), keep, extra...)
	l, name, err := q.logOf(topic)
	if err == nil {
		_, err = l.Produce(ctx, name, []topics.Record{rec})
	}
	if err != nil {
		return fmt.Errorf("dead-lettering %s to %s: %w", m.ID(), topic, err)
	}
	return nil
}

// Entry is one dead-lettered message: one source message of one handler
// (or one failed replay of it), however many records its dead-lettering
// left in the topic. See group.
type Entry struct {
	// ID is "<partition>-<offset>" of the record in the dead-letter topic.
	ID string `json:"id"`
	// Topic is the dead-letter topic the record is in.
	Topic           string `json:"topic"`
	Handler         string `json:"handler"`
	Key             string `json:"key,omitempty"`
	KeyBase64       string `json:"keyBase64,omitempty"`
	Error           string `json:"error"`
	Status          int    `json:"status,omitempty"`
	Attempts        int    `json:"attempts"`
	SourceTopic     string `json:"sourceTopic"`
	SourcePartition int    `json:"sourcePartition"`
	SourceOffset    int64  `json:"sourceOffset"`
	// SourceRef is the Watermill UUID of a queued message that had one
	// (handlers.Message.Ref); its partition and offset are then -1.
	SourceRef string `json:"sourceRef,omitempty"`
	// ReplayOf is, for the failure of a replayed message, the entry
	// ("<topic>/<partition>-<offset>") whose replay failed.
	ReplayOf string `json:"replayOf,omitempty"`
	// Duplicates are the ids of further records of the same source message
	// (a retried write, a crash before the commit): they are not entries
	// of their own, and share this entry's state.
	Duplicates []string `json:"duplicates,omitempty"`
	// DuplicateOf is set when the id asked for is such a further record:
	// the id of the entry it belongs to.
	DuplicateOf    string    `json:"duplicateOf,omitempty"`
	FirstFailure   time.Time `json:"firstFailure"`
	LastFailure    time.Time `json:"lastFailure"`
	State          string    `json:"state"`
	StateChangedAt time.Time `json:"stateChangedAt,omitzero"`
	// Show only: the payload and the original headers.
	Value       *string           `json:"value,omitempty"`
	ValueBase64 string            `json:"valueBase64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`

	raw       topics.Message
	hasSource bool
	// members are the entry's records, itself first.
	members []member
}

type member struct {
	id          string
	lastFailure time.Time
}

// sourceID is the failed message's id (handlers.Message.ID).
func (e *Entry) sourceID() string {
	if e.SourceRef != "" {
		return e.SourceTopic + "/" + e.SourceRef
	}
	return handlers.FormatID(e.SourceTopic, e.SourcePartition, e.SourceOffset)
}

type stateRecord struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

func entryKey(handler, topic, id string) string { return handler + "/" + topic + "/" + id }
func legacyKey(handler, id string) string       { return handler + "/" + id }
func topicKey(handler, topic string) string     { return topicKeyPrefix + handler + "/" + topic }

// decode reads one record of topic as an entry of handler, without its
// state; false if the record is not a dead letter of handler.
func decode(handler, topic string, m topics.Message, withPayload bool) (Entry, bool) {
	e := Entry{ID: formatID(m.Partition, m.Offset), Topic: topic, State: StateDead, raw: m}
	found := false
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderHandler:
			e.Handler = v
			found = true
		case HeaderFailedAt:
			var ok bool
			e.SourceTopic, e.SourcePartition, e.SourceOffset, ok = handlers.ParseID(v)
			if i := strings.LastIndexByte(v, '/'); !ok && i > 0 {
				e.SourceTopic, e.SourcePartition, e.SourceOffset, e.SourceRef = v[:i], -1, -1, v[i+1:]
				ok = true
			}
			e.hasSource = ok
		case HeaderReplayOf:
			e.ReplayOf = strings.ToValidUTF8(v, "")
		case HeaderAttempts:
			e.Attempts, _ = strconv.Atoi(v)
		case HeaderFirstFailure:
			e.FirstFailure, _ = time.Parse(time.RFC3339Nano, v)
		case HeaderLastFailure:
			e.LastFailure, _ = time.Parse(time.RFC3339Nano, v)
		case HeaderError:
			e.Error = v
		case HeaderStatus:
			e.Status, _ = strconv.Atoi(v)
		default:
			if withPayload && !strings.HasPrefix(h.Key, headerPrefix) {
				if e.Headers == nil {
					e.Headers = map[string]string{}
				}
				e.Headers[h.Key] = v
			}
		}
	}
	if !found || e.Handler != handler {
		return Entry{}, false
	}
	if m.Key != nil {
		if utf8.Valid(m.Key) {
			e.Key = string(m.Key)
		} else {
			e.KeyBase64 = base64.StdEncoding.EncodeToString(m.Key)
		}
	}
	if withPayload {
		if utf8.Valid(m.Value) {
			s := string(m.Value)
			e.Value = &s
		} else {
			e.ValueBase64 = base64.StdEncoding.EncodeToString(m.Value)
		}
	}
	e.members = []member{{e.ID, e.LastFailure}}
	return e, true
}

// group folds the records of one source message into one entry, the same
// way on every node: records of the same handler with the same source id
// (sluice-dlq-source) and the same replay-of (sluice-dlq-replay-of, empty
// for a first failure) are one entry, and the record with the lowest
// offset (then the lowest partition) is the entry; the others are its
// Duplicates. A record without a source id is an entry of its own, and so
// is one that failed after the entry it would join was replayed or
// discarded (a failure, not a duplicate, of a replay written by an earlier
// version, which did not record replay-of). The entry's state is the
// latest state set on any of its records. Only the
// records given are folded: a listing reads the newest ScanLimit records
// of each partition, so a duplicate whose first record is older than that
// shows as an entry of its own there (a replay or purge of all reads
// every record and has no such limit). Entries are returned newest first.
func (q *Queue) group(handler, topic string, recs []Entry) []Entry {
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].raw.Offset != recs[j].raw.Offset {
			return recs[i].raw.Offset < recs[j].raw.Offset
		}
		return recs[i].raw.Partition < recs[j].raw.Partition
	})
	type gkey struct{ source, replayOf string }
	idx := map[gkey]int{}
	out := make([]Entry, 0, len(recs))
	for _, e := range recs {
		if e.hasSource {
			k := gkey{e.sourceID(), e.ReplayOf}
			if i, ok := idx[k]; ok {
				// A record that failed after its entry was replayed or
				// discarded is a new failure, not a duplicate: the failure
				// of a replay written by a version that did not record
				// replay-of, or a redelivery that came that late.
				if st, at := q.state(handler, topic, out[i].members); st == StateDead || !e.LastFailure.After(at) {
					out[i].Duplicates = append(out[i].Duplicates, e.ID)
					out[i].members = append(out[i].members, member{e.ID, e.LastFailure})
					continue
				}
			}
			idx[k] = len(out)
		}
		out = append(out, e)
	}
	for i := range out {
		out[i].State, out[i].StateChangedAt = q.state(handler, topic, out[i].members)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].LastFailure.Equal(out[j].LastFailure) {
			return out[i].LastFailure.After(out[j].LastFailure)
		}
		if out[i].raw.Partition != out[j].raw.Partition {
			return out[i].raw.Partition > out[j].raw.Partition
		}
		return out[i].raw.Offset > out[j].raw.Offset
	})
	return out
}

// state is the latest state set on any of an entry's records; dead if none.
func (q *Queue) state(handler, topic string, ms []member) (string, time.Time) {
	state, at := StateDead, time.Time{}
	for _, m := range ms {
		st, ok := q.recordState(handler, topic, m)
		if ok && st.At.After(at) {
			state, at = st.State, st.At
		}
	}
	return state, at
}

func (q *Queue) recordState(handler, topic string, m member) (stateRecord, bool) {
	var st stateRecord
	if row, ok := q.states.Get(entryKey(handler, topic, m.id)); ok {
		return st, json.Unmarshal(row.Value, &st) == nil
	}
	if row, ok := q.states.Get(legacyKey(handler, m.id)); ok && json.Unmarshal(row.Value, &st) == nil && legacyApplies(st, m) {
		return st, true
	}
	return st, false
}

// legacyApplies decides whether a state written by an earlier version,
// whose key names no topic, applies to a record: only if the state was set
// at or after the record's last failure. A state is set on an entry that
// exists, so a record dead-lettered after the state was written (at the
// same partition and offset of another topic, after deadLetter.topic
// changed) is not the one it was set on, and stays dead. The rule compares
// two nodes' clocks (the dead-lettering one's and the marking one's), and
// cannot tell apart two topics whose records at the same coordinates both
// failed before the state was set; states written by this version name
// their topic and need no such rule.
func legacyApplies(st stateRecord, m member) bool { return !st.At.Before(m.lastFailure) }

// Filter selects entries in a listing.
type Filter struct {
	// ErrorContains keeps entries whose error contains this text
	// (case-insensitive).
	ErrorContains string
	// Since and Until bound the last failure time.
	Since, Until time.Time
	// State keeps entries in this state; "" keeps all.
	State string
	// Limit is the page size. Default 50, at most 1,000.
	Limit int
	// Offset skips that many matching entries (the page token).
	Offset int
}

// Page is one page of a listing, newest first.
type Page struct {
	Entries []Entry `json:"entries"`
	// Total is how many entries matched (within the scan limit).
	Total int `json:"total"`
	// Next is the offset of the next page, 0 when there is none.
	Next int `json:"next,omitempty"`
	// DuplicateRecords counts the further records of the matched entries
	// (see Entry.Duplicates): records in the topic = Total + this.
	DuplicateRecords int `json:"duplicateRecords,omitempty"`
}

// List returns handler's entries in topic, newest first.
func (q *Queue) List(ctx context.Context, handler, topic string, f Filter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 1000)
	all, err := q.entries(ctx, handler, topic, q.ScanLimit)
	if err != nil {
		return Page{}, err
	}
	needle := strings.ToLower(f.ErrorContains)
	var match []Entry
	dups := 0
	for _, e := range all {
		switch {
		case needle != "" && !strings.Contains(strings.ToLower(e.Error), needle):
		case !f.Since.IsZero() && e.LastFailure.Before(f.Since):
		case !f.Until.IsZero() && e.LastFailure.After(f.Until):
		case f.State != "" && e.State != f.State:
		default:
			match = append(match, e)
			dups += len(e.Duplicates)
		}
	}
	p := Page{Total: len(match), Entries: []Entry{}, DuplicateRecords: dups}
	if f.Offset < len(match) {
		end := min(len(match), f.Offset+f.Limit)
		p.Entries = match[f.Offset:end]
		if end < len(match) {
			p.Next = end
		}
	}
	return p, nil
}

// entries reads up to limit newest records of each partition (all when
// limit is 0) and returns handler's entries, newest first.
func (q *Queue) entries(ctx context.Context, handler, topic string, limit int64) ([]Entry, error) {
	recs, err := q.scan(ctx, handler, topic, limit)
	if err != nil {
		return nil, err
	}
	return q.group(handler, topic, recs), nil
}

// scan reads up to limit newest records of each partition (all when limit
// is 0) and returns handler's records, without states.
func (q *Queue) scan(ctx context.Context, handler, topic string, limit int64) ([]Entry, error) {
	l, name, err := q.logOf(topic)
	if err != nil {
		return nil, err
	}
	n, err := l.Partitions(ctx, name)
	if errors.Is(err, topics.ErrUnknownTopic) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ranges, err := l.Offsets(ctx, name, n)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for p := 0; p < n; p++ {
		rg := ranges[p]
		from := rg.Start
		if limit > 0 && rg.End-limit > from {
			from = rg.End - limit
		}
		err := l.Read(ctx, name, p, from, rg.End, func(m topics.Message) bool {
			if e, ok := decode(handler, topic, m, false); ok {
				out = append(out, e)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Get returns one entry with its payload. If id is a duplicate record of
// an entry (within the newest ScanLimit records of each partition), the
// entry returned is that record with DuplicateOf naming the entry, and
// the entry's state.
func (q *Queue) Get(ctx context.Context, handler, topic, id string) (Entry, error) {
	e, err := q.record(ctx, handler, topic, id, true)
	if err != nil {
		return Entry{}, err
	}
	recs, err := q.scan(ctx, handler, topic, q.ScanLimit)
	if err != nil {
		return Entry{}, err
	}
	in := false
	for _, r := range recs {
		in = in || r.ID == id
	}
	if !in {
		recs = append(recs, e)
	}
	for _, g := range q.group(handler, topic, recs) {
		for _, m := range g.members {
			if m.id != id {
				continue
			}
			e.State, e.StateChangedAt = g.State, g.StateChangedAt
			if g.ID == id {
				e.Duplicates = g.Duplicates
			} else {
				e.DuplicateOf = g.ID
			}
			return e, nil
		}
	}
	return e, nil
}

// record reads the record named id, as an entry of its own.
func (q *Queue) record(ctx context.Context, handler, topic, id string, withPayload bool) (Entry, error) {
	p, off, err := parseID(id)
	if err != nil {
		return Entry{}, err
	}
	l, name, err := q.logOf(topic)
	if err != nil {
		return Entry{}, err
	}
	n, err := l.Partitions(ctx, name)
	if errors.Is(err, topics.ErrUnknownTopic) || err == nil && p >= n {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return Entry{}, err
	}
	ranges, err := l.Offsets(ctx, name, n)
	if err != nil {
		return Entry{}, err
	}
	if rg := ranges[p]; off < rg.Start || off >= rg.End {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var e Entry
	found := false
	err = l.Read(ctx, name, p, off, off+1, func(m topics.Message) bool {
		if m.Offset == off {
			e, found = decode(handler, topic, m, withPayload)
		}
		return false
	})
	if err != nil {
		return Entry{}, err
	}
	if !found {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	e.State, e.StateChangedAt = q.state(handler, topic, e.members)
	return e, nil
}

func formatID(p int, off int64) string { return strconv.Itoa(p) + "-" + strconv.FormatInt(off, 10) }

// parseID reads an entry id, "<partition>-<offset>" in canonical form
// (no sign, no leading zero), so that one record has one id.
func parseID(id string) (int, int64, error) {
	ps, os, ok := strings.Cut(id, "-")
	p, err1 := strconv.Atoi(ps)
	off, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || off < 0 || formatID(p, off) != id {
		return 0, 0, fmt.Errorf("%w: %q is not an entry id (they look like 3-1042)", ErrNotFound, id)
	}
	return p, off, nil
}

// CheckIDs checks that every id is an entry id, without reading anything:
// what a job checks before it starts.
func CheckIDs(ids []string) error {
	for _, id := range ids {
		if _, _, err := parseID(id); err != nil {
			return err
		}
	}
	return nil
}

// Selection names the entries an operation applies to: ids, or all entries
// in state dead.
type Selection struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
	// Force lets Replay take entries named by id that are not dead.
	Force bool `json:"force,omitempty"`
}

// resolve returns the selected entries, oldest first for all. An id of a
// duplicate record selects its entry; an entry named twice is taken once.
func (q *Queue) resolve(ctx context.Context, handler, topic string, sel Selection) ([]Entry, error) {
	if sel.All == (len(sel.IDs) > 0) {
		return nil, errors.New("name the entries to act on: ids, or all")
	}
	if sel.All {
		all, err := q.entries(ctx, handler, topic, 0)
		if err != nil {
			return nil, err
		}
		var dead []Entry
		for i := len(all) - 1; i >= 0; i-- { // oldest first
			if all[i].State == StateDead {
				dead = append(dead, all[i])
			}
		}
		return dead, nil
	}
	for _, id := range sel.IDs {
		if _, _, err := parseID(id); err != nil {
			return nil, err
		}
	}
	all, err := q.entries(ctx, handler, topic, q.ScanLimit)
	if err != nil {
		return nil, err
	}
	byID := map[string]int{}
	for i, e := range all {
		for _, m := range e.members {
			byID[m.id] = i
		}
	}
	out := make([]Entry, 0, len(sel.IDs))
	taken := map[string]bool{}
	for _, id := range sel.IDs {
		var e Entry
		if i, ok := byID[id]; ok {
			e = all[i]
		} else {
			// Older than the scan: the record alone.
			if e, err = q.record(ctx, handler, topic, id, false); err != nil {
				return nil, err
			}
		}
		if taken[e.ID] {
			continue
		}
		taken[e.ID] = true
		out = append(out, e)
	}
	return out, nil
}

// replayBatch is how many entries are replayed and marked at a time; a
// crash can replay at most this many twice.
const replayBatch = 500

// Progress is told, after each batch, how many of the selected entries
// are done and how many were selected.
type Progress func(done, total int)

// Replay delivers the selected entries again to handler alone, through its
// replay topic, and marks them replayed. Each batch is written to the
// replay topic before it is marked, so a crash midway loses nothing: what
// was not marked is still dead and is replayed by the next request.
func (q *Queue) Replay(ctx context.Context, handler, dlqTopic, replayTopic string, sel Selection, progress Progress) (int, error) {
	return q.ReplayVia(ctx, handler, dlqTopic, func(ctx context.Context, recs []topics.Record) error {
		if _, err := q.tc.Produce(ctx, replayTopic, recs); err != nil {
			return fmt.Errorf("replaying to %s: %w", replayTopic, err)
		}
		return nil
	}, sel, progress)
}

// ReplayVia is Replay with write delivering each batch (a handler whose
// source is a queue gets its replays on that queue). write must return
// only once the batch is durable. One record is delivered per entry (not
// one per duplicate record), and every record of the entry is marked.
func (q *Queue) ReplayVia(ctx context.Context, handler, dlqTopic string, write func(context.Context, []topics.Record) error, sel Selection, progress Progress) (int, error) {
	entries, err := q.resolve(ctx, handler, dlqTopic, sel)
	if err != nil {
		return 0, err
	}
	if !sel.Force {
		// Replaying an entry twice delivers its message twice: say so
		// rather than do it, unless asked to.
		for _, e := range entries {
			if e.State != StateDead {
				return 0, fmt.Errorf("%w: entry %s of %s is %s (at %s); nothing was replayed: replay it again with force",
					ErrNotDead, e.ID, handler, e.State, e.StateChangedAt.Format(time.RFC3339))
			}
		}
	}
	report(progress, 0, len(entries))
	done := 0
	for start := 0; start < len(entries); start += replayBatch {
		batch := entries[start:min(len(entries), start+replayBatch)]
		recs := make([]topics.Record, len(batch))
		notOurs := func(k string) bool { return !strings.HasPrefix(k, headerPrefix) }
		for i, e := range batch {
			recs[i] = topics.Forward(e.raw.Key, e.raw.Value, e.raw.Headers, notOurs,
				kafka.Header{Key: handlers.HeaderOriginal, Value: []byte(e.sourceID())},
				kafka.Header{Key: handlers.HeaderReplayOf, Value: []byte(dlqTopic + "/" + e.ID)},
			)
		}
		if err := write(ctx, recs); err != nil {
			return done, fmt.Errorf("after %d entries: %w", done, err)
		}
		if err := q.mark(ctx, handler, dlqTopic, batch, StateReplayed); err != nil {
			return done, fmt.Errorf("marking entries replayed after %d: %w", done, err)
		}
		done += len(batch)
		report(progress, done, len(entries))
	}
	return done, nil
}

func report(p Progress, done, total int) {
	if p != nil {
		p(done, total)
	}
}

// Discard marks the selected entries discarded.
func (q *Queue) Discard(ctx context.Context, handler, dlqTopic string, sel Selection, progress Progress) (int, error) {
	entries, err := q.resolve(ctx, handler, dlqTopic, sel)
	if err != nil {
		return 0, err
	}
	report(progress, 0, len(entries))
	for start := 0; start < len(entries); start += replayBatch {
		end := min(len(entries), start+replayBatch)
		if err := q.mark(ctx, handler, dlqTopic, entries[start:end], StateDiscarded); err != nil {
			return start, fmt.Errorf("marking entries discarded after %d: %w", start, err)
		}
		report(progress, end, len(entries))
	}
	return len(entries), nil
}

// mark sets state on every record of the entries.
func (q *Queue) mark(ctx context.Context, handler, topic string, es []Entry, state string) error {
	if len(es) == 0 {
		return nil
	}
	v, _ := json.Marshal(stateRecord{State: state, At: time.Now().UTC()})
	var keys []string
	var vals [][]byte
	for _, e := range es {
		for _, m := range e.members {
			keys, vals = append(keys, entryKey(handler, topic, m.id)), append(vals, v)
		}
	}
	_, err := q.states.PutMany(ctx, keys, vals)
	return err
}

// RetireTopic records that handler no longer uses topic as its dead-letter
// topic (its deadLetter.topic changed, or it is being deleted), so that its
// entries can still be named with that topic. Recording it twice is
// harmless.
func (q *Queue) RetireTopic(ctx context.Context, handler, topic string) error {
	if err := handlers.ValidateName(handler); err != nil {
		return err
	}
	if err := CheckTopic(topic); err != nil {
		return err
	}
	v, _ := json.Marshal(stateRecord{State: StateRetired, At: time.Now().UTC()})
	_, err := q.states.Put(ctx, topicKey(handler, topic), v)
	return err
}

// RetiredTopic is a dead-letter topic a handler used before.
type RetiredTopic struct {
	Topic     string    `json:"topic"`
	RetiredAt time.Time `json:"retiredAt"`
}

// RetiredTopics returns the dead-letter topics handler left, by name.
func (q *Queue) RetiredTopics(handler string) []RetiredTopic {
	prefix := topicKeyPrefix + handler + "/"
	var out []RetiredTopic
	for _, r := range q.states.Rows() {
		t, ok := strings.CutPrefix(r.Key, prefix)
		if !ok {
			continue
		}
		var st stateRecord
		if json.Unmarshal(r.Value, &st) == nil {
			out = append(out, RetiredTopic{Topic: t, RetiredAt: st.At})
		}
	}
	return out
}

// IsRetired reports whether handler left topic as its dead-letter topic.
func (q *Queue) IsRetired(handler, topic string) bool {
	_, ok := q.states.Get(topicKey(handler, topic))
	return ok
}

// validJobID reports whether id is a job id: 16 lowercase hex digits.
func validJobID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// maxJobError bounds the error text kept with a job.
const maxJobError = 1024

// checkJob checks a stored job: it is shown to users and decides whether a
// new job may start.
func checkJob(handler, id string, value []byte) error {
	var j Job
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	switch err := dec.Decode(&j); {
	case err != nil:
		return err
	case dec.More():
		return errors.New("trailing data after the job")
	case j.ID != id || j.Handler != handler:
		return errors.New("the job's id or handler differs from its key")
	case j.Kind != JobReplay && j.Kind != JobDiscard:
		return fmt.Errorf("unknown job kind %q", j.Kind)
	case j.State != JobRunning && j.State != JobSucceeded && j.State != JobFailed:
		return fmt.Errorf("unknown job state %q", j.State)
	case j.Done < 0 || j.Total < 0:
		return errors.New("negative counts")
	case j.StartedAt.IsZero():
		return errors.New("no start time")
	case len(j.Error) > maxJobError+16 || len(j.Node) > 255 || !utf8.ValidString(j.Error) || !utf8.ValidString(j.Node):
		return errors.New("error or node text too long or not UTF-8")
	}
	return CheckTopic(j.Topic)
}

func jobKey(handler, id string) string { return jobKeyPrefix + handler + "/" + id }

// staleJob reports whether a job row says running while the row it would
// replace says the job ended: a progress write that landed after the
// outcome. Every node applies the same records in the same order, so every
// node keeps the outcome.
func (q *Queue) staleJob(key string, value []byte) bool {
	if q.states == nil {
		return false
	}
	row, ok := q.states.Get(key)
	if !ok {
		return false
	}
	var prev, next Job
	if json.Unmarshal(row.Value, &prev) != nil || json.Unmarshal(value, &next) != nil {
		return false
	}
	return prev.State != JobRunning && next.State == JobRunning
}

// The queue keeps the jobs in its state topic, so that every node sees them.
var _ JobStore = (*Queue)(nil)

// PutJob writes j's row.
func (q *Queue) PutJob(ctx context.Context, j Job) error {
	if len(j.Error) > maxJobError {
		j.Error = strings.ToValidUTF8(j.Error[:maxJobError], "") + "…"
	}
	v, err := json.Marshal(j)
	if err != nil {
		return err
	}
	_, err = q.states.Put(ctx, jobKey(j.Handler, j.ID), v)
	return err
}

// GetJob returns handler's job id as last written.
func (q *Queue) GetJob(handler, id string) (Job, bool) {
	row, ok := q.states.Get(jobKey(handler, id))
	if !ok {
		return Job{}, false
	}
	var j Job
	return j, json.Unmarshal(row.Value, &j) == nil
}

// ListJobs returns handler's stored jobs, newest first.
func (q *Queue) ListJobs(handler string) []Job {
	prefix := jobKey(handler, "")
	var out []Job
	for _, r := range q.states.Rows() {
		if !strings.HasPrefix(r.Key, prefix) {
			continue
		}
		var j Job
		if json.Unmarshal(r.Value, &j) == nil {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].StartedAt.Equal(out[b].StartedAt) {
			return out[a].StartedAt.After(out[b].StartedAt)
		}
		return out[a].ID > out[b].ID
	})
	return out
}

// DeleteJob removes handler's job id.
func (q *Queue) DeleteJob(ctx context.Context, handler, id string) error {
	_, err := q.states.Put(ctx, jobKey(handler, id), nil)
	return err
}
