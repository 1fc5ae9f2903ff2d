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
	"log/slog"
	"sort"
	"strconv"
	"strings"
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
	headerPrefix       = "sluice-dlq-"
)

// Entry states.
const (
	StateDead      = "dead"
	StateReplayed  = "replayed"
	StateDiscarded = "discarded"
)

// maxErrorText bounds the error text kept with an entry.
const maxErrorText = 1024

// ErrNotFound is returned for an entry id that does not exist.
var ErrNotFound = errors.New("dead-letter entry not found")

// ErrNotDead is returned by Replay for an entry named by id that was
// already replayed or discarded, unless the selection forces it.
var ErrNotDead = errors.New("dead-letter entry is not dead")

// Queue is the dead-letter queue of every handler. Safe for concurrent use.
type Queue struct {
	tc     *topics.Client
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

// checkState admits a state record only if its key names an entry
// ("<handler>/<partition>-<offset>") and its value is a known state: the
// topic is writable by anyone with a Kafka client, and a record that is
// not one of ours must not change what an entry is. A skipped record is
// logged once (each is read once per node) and counted.
func (q *Queue) checkState(key string, value []byte, offset int64) bool {
	handler, id, _ := strings.Cut(key, "/")
	err := handlers.ValidateName(handler)
	if err == nil {
		_, _, err = parseID(id)
	}
	if err == nil && value != nil {
		var st stateRecord
		dec := json.NewDecoder(bytes.NewReader(value))
		dec.DisallowUnknownFields()
		switch err = dec.Decode(&st); {
		case err != nil:
		case st.State != StateDead && st.State != StateReplayed && st.State != StateDiscarded:
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
	// Sluice's own headers of an earlier hop (a replay, a delay topic, a
	// dead letter) do not travel on.
	keep := func(k string) bool {
		return !strings.HasPrefix(k, headerPrefix) && !strings.HasPrefix(k, "sluice-retry-") &&
			k != handlers.HeaderOriginal && k != handlers.HeaderReplayOf
	}
	rec := topics.Forward(m.Key, m.Value, topics.KafkaHeaders(m.Headers), keep, extra...)
	_, err := q.tc.Produce(ctx, topic, []topics.Record{rec})
	if err != nil {
		return fmt.Errorf("dead-lettering %s to %s: %w", m.ID(), topic, err)
	}
	return nil
}

// Entry is one dead-lettered message.
type Entry struct {
	// ID is "<partition>-<offset>" of the record in the dead-letter topic.
	ID              string `json:"id"`
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
	SourceRef      string    `json:"sourceRef,omitempty"`
	FirstFailure   time.Time `json:"firstFailure"`
	LastFailure    time.Time `json:"lastFailure"`
	State          string    `json:"state"`
	StateChangedAt time.Time `json:"stateChangedAt,omitzero"`
	// Show only: the payload and the original headers.
	Value       *string           `json:"value,omitempty"`
	ValueBase64 string            `json:"valueBase64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`

	raw topics.Message
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

func stateKey(handler, id string) string { return handler + "/" + id }

func (q *Queue) decode(handler string, m topics.Message, withPayload bool) (Entry, bool) {
	e := Entry{ID: fmt.Sprintf("%d-%d", m.Partition, m.Offset), State: StateDead, raw: m}
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
			}
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
	if row, ok := q.states.Get(stateKey(handler, e.ID)); ok {
		var st stateRecord
		if json.Unmarshal(row.Value, &st) == nil {
			e.State, e.StateChangedAt = st.State, st.At
		}
	}
	return e, true
}

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
}

// List returns handler's entries in topic, newest first.
func (q *Queue) List(ctx context.Context, handler, topic string, f Filter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 1000)
	all, err := q.scan(ctx, handler, topic, q.ScanLimit)
	if err != nil {
		return Page{}, err
	}
	needle := strings.ToLower(f.ErrorContains)
	var match []Entry
	for _, e := range all {
		switch {
		case needle != "" && !strings.Contains(strings.ToLower(e.Error), needle):
		case !f.Since.IsZero() && e.LastFailure.Before(f.Since):
		case !f.Until.IsZero() && e.LastFailure.After(f.Until):
		case f.State != "" && e.State != f.State:
		default:
			match = append(match, e)
		}
	}
	p := Page{Total: len(match), Entries: []Entry{}}
	if f.Offset < len(match) {
		end := min(len(match), f.Offset+f.Limit)
		p.Entries = match[f.Offset:end]
		if end < len(match) {
			p.Next = end
		}
	}
	return p, nil
}

// scan reads up to limit newest records of each partition (all when limit
// is 0) and returns handler's entries newest first.
func (q *Queue) scan(ctx context.Context, handler, topic string, limit int64) ([]Entry, error) {
	n, err := q.tc.Partitions(ctx, topic)
	if errors.Is(err, topics.ErrUnknownTopic) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ranges, err := q.tc.Offsets(ctx, topic, n)
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
		err := q.tc.Read(ctx, topic, p, from, rg.End, func(m topics.Message) bool {
			if e, ok := q.decode(handler, m, false); ok {
				out = append(out, e)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].LastFailure.Equal(out[j].LastFailure) {
			return out[i].LastFailure.After(out[j].LastFailure)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Get returns one entry with its payload.
func (q *Queue) Get(ctx context.Context, handler, topic, id string) (Entry, error) {
	p, off, err := parseID(id)
	if err != nil {
		return Entry{}, err
	}
	n, err := q.tc.Partitions(ctx, topic)
	if errors.Is(err, topics.ErrUnknownTopic) || err == nil && p >= n {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return Entry{}, err
	}
	ranges, err := q.tc.Offsets(ctx, topic, n)
	if err != nil {
		return Entry{}, err
	}
	if rg := ranges[p]; off < rg.Start || off >= rg.End {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var e Entry
	found := false
	err = q.tc.Read(ctx, topic, p, off, off+1, func(m topics.Message) bool {
		if m.Offset == off {
			e, found = q.decode(handler, m, true)
		}
		return false
	})
	if err != nil {
		return Entry{}, err
	}
	if !found {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return e, nil
}

func parseID(id string) (int, int64, error) {
	ps, os, ok := strings.Cut(id, "-")
	p, err1 := strconv.Atoi(ps)
	off, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || off < 0 {
		return 0, 0, fmt.Errorf("%w: %q is not an entry id (they look like 3-1042)", ErrNotFound, id)
	}
	return p, off, nil
}

// Selection names the entries an operation applies to: ids, or all entries
// in state dead.
type Selection struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
	// Force lets Replay take entries named by id that are not dead.
	Force bool `json:"force,omitempty"`
}

func (q *Queue) resolve(ctx context.Context, handler, topic string, sel Selection) ([]Entry, error) {
	if sel.All == (len(sel.IDs) > 0) {
		return nil, errors.New("name the entries to act on: ids, or all")
	}
	if sel.All {
		all, err := q.scan(ctx, handler, topic, 0)
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
	out := make([]Entry, 0, len(sel.IDs))
	seen := map[string]bool{}
	for _, id := range sel.IDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		e, err := q.Get(ctx, handler, topic, id)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// replayBatch is how many entries are replayed and marked at a time; a
// crash can replay at most this many twice.
const replayBatch = 500

// Replay delivers the selected entries again to handler alone, through its
// replay topic, and marks them replayed. Each batch is written to the
// replay topic before it is marked, so a crash midway loses nothing: what
// was not marked is still dead and is replayed by the next request.
func (q *Queue) Replay(ctx context.Context, handler, dlqTopic, replayTopic string, sel Selection) (int, error) {
	return q.ReplayVia(ctx, handler, dlqTopic, func(ctx context.Context, recs []topics.Record) error {
		if _, err := q.tc.Produce(ctx, replayTopic, recs); err != nil {
			return fmt.Errorf("replaying to %s: %w", replayTopic, err)
		}
		return nil
	}, sel)
}

// ReplayVia is Replay with write delivering each batch (a handler whose
// source is a queue gets its replays on that queue). write must return
// only once the batch is durable.
func (q *Queue) ReplayVia(ctx context.Context, handler, dlqTopic string, write func(context.Context, []topics.Record) error, sel Selection) (int, error) {
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
	done := 0
	for start := 0; start < len(entries); start += replayBatch {
		batch := entries[start:min(len(entries), start+replayBatch)]
		recs := make([]topics.Record, len(batch))
		notOurs := func(k string) bool { return !strings.HasPrefix(k, headerPrefix) }
		for i, e := range batch {
			recs[i] = topics.Forward(e.raw.Key, e.raw.Value, e.raw.Headers, notOurs,
				kafka.Header{Key: handlers.HeaderOriginal, Value: []byte(e.sourceID())},
				kafka.Header{Key: handlers.HeaderReplayOf, Value: []byte(e.ID)},
			)
		}
		if err := write(ctx, recs); err != nil {
			return done, fmt.Errorf("after %d entries: %w", done, err)
		}
		if err := q.mark(ctx, handler, batch, StateReplayed); err != nil {
			return done, fmt.Errorf("marking entries replayed after %d: %w", done, err)
		}
		done += len(batch)
	}
	return done, nil
}

// Discard marks the selected entries discarded.
func (q *Queue) Discard(ctx context.Context, handler, dlqTopic string, sel Selection) (int, error) {
	entries, err := q.resolve(ctx, handler, dlqTopic, sel)
	if err != nil {
		return 0, err
	}
	for start := 0; start < len(entries); start += replayBatch {
		if err := q.mark(ctx, handler, entries[start:min(len(entries), start+replayBatch)], StateDiscarded); err != nil {
			return start, err
		}
	}
	return len(entries), nil
}

func (q *Queue) mark(ctx context.Context, handler string, es []Entry, state string) error {
	if len(es) == 0 {
		return nil
	}
	v, _ := json.Marshal(stateRecord{State: state, At: time.Now().UTC()})
	keys := make([]string, len(es))
	vals := make([][]byte, len(es))
	for i, e := range es {
		keys[i], vals[i] = stateKey(handler, e.ID), v
	}
	_, err := q.states.PutMany(ctx, keys, vals)
	return err
}
