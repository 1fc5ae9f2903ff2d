// Package ktable materializes a compacted Kafka topic as a key/value table:
// every node tails the topic and converges on the same rows, and a write
// returns once this node has applied it (read-your-writes). The handler
// registry and the dead-letter entry states are kept this way.
package ktable

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/topics"
)

// Row is one key's latest value and the offset of the record that set it.
type Row struct {
	Key    string
	Value  []byte
	Offset int64
}

// Config configures a Table.
type Config struct {
	Topics  *topics.Client
	Brokers []string
	Dialer  *kafka.Dialer
	Topic   string
	Logger  *slog.Logger
	// Decode, if set, is called for every applied record (value nil for a
	// tombstone); a false return skips the record, leaving the row as it was.
	Decode func(key string, value []byte, offset int64) bool
}

// Table is a node's view of one compacted topic. Safe for concurrent use.
type Table struct {
	cfg Config

	mu      sync.Mutex
	rows    map[string]Row
	applied int64         // offset of the next record to apply
	changed chan struct{} // closed and replaced on every change
	loaded  bool
	readErr error
}

// New returns a table that is empty until Run has caught up.
func New(cfg Config) *Table {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Table{cfg: cfg, rows: make(map[string]Row), changed: make(chan struct{})}
}

// Run creates the topic (one partition, compacted) if needed and tails it
// until ctx is done, retrying while the broker is unreachable.
func (t *Table) Run(ctx context.Context) error {
	log := t.cfg.Logger.With("topic", t.cfg.Topic)
	backoff := 200 * time.Millisecond
	var end int64
	for {
		err := t.cfg.Topics.Ensure(ctx, t.cfg.Topic, 1, map[string]string{"cleanup.policy": "compact"})
		if err == nil {
			var offs map[int]topics.Range
			if offs, err = t.cfg.Topics.Offsets(ctx, t.cfg.Topic, 1); err == nil {
				end = offs[0].End
				break
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		t.setErr(fmt.Errorf("reaching %s: %w", t.cfg.Topic, err))
		log.Warn("state topic not reachable; retrying", "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	if end == 0 {
		t.markLoaded()
	}
	rd := kafka.NewReader(kafka.ReaderConfig{
		Brokers: t.cfg.Brokers, Dialer: t.cfg.Dialer, Topic: t.cfg.Topic, Partition: 0,
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 50 * time.Millisecond, StartOffset: kafka.FirstOffset,
	})
	defer rd.Close()
	for {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			t.setErr(err)
			log.Warn("reading state topic failed; retrying", "err", err)
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		t.apply(m)
		if m.Offset+1 >= end {
			t.markLoaded()
		}
	}
}

func (t *Table) apply(m kafka.Message) {
	key := string(m.Key)
	var value []byte
	if len(m.Value) > 0 {
		value = m.Value
	}
	ok := t.cfg.Decode == nil || t.cfg.Decode(key, value, m.Offset)
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		if value == nil {
			delete(t.rows, key)
		} else {
			t.rows[key] = Row{Key: key, Value: value, Offset: m.Offset}
		}
	}
	t.applied = m.Offset + 1
	t.readErr = nil
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *Table) markLoaded() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.loaded {
		t.loaded = true
		close(t.changed)
		t.changed = make(chan struct{})
	}
}

func (t *Table) setErr(err error) {
	t.mu.Lock()
	t.readErr = err
	t.mu.Unlock()
}

// Loaded reports whether the table has caught up with the topic as it was
// when Run started, and the last read error, if any.
func (t *Table) Loaded() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loaded, t.readErr
}

// Changed returns a channel closed at the next change (or load).
func (t *Table) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// Get returns the row for key.
func (t *Table) Get(key string) (Row, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.rows[key]
	return r, ok
}

// Rows returns every row, sorted by key.
func (t *Table) Rows() []Row {
	t.mu.Lock()
	out := make([]Row, 0, len(t.rows))
	for _, r := range t.rows {
		out = append(out, r)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Put writes key=value (nil deletes) and returns the record's offset once
// this node has applied it.
func (t *Table) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return t.PutMany(ctx, []string{key}, [][]byte{value})
}

// PutMany writes several rows in one request and returns the offset of the
// last once this node has applied them all.
func (t *Table) PutMany(ctx context.Context, keys []string, values [][]byte) (int64, error) {
	recs := make([]topics.Record, len(keys))
	for i, k := range keys {
		recs[i] = topics.Record{Key: []byte(k), Value: values[i], Partition: 0}
	}
	res, err := t.cfg.Topics.Produce(ctx, t.cfg.Topic, recs)
	if err != nil {
		return 0, fmt.Errorf("writing %s: %w", t.cfg.Topic, err)
	}
	off := res[len(res)-1].Offset
	for {
		t.mu.Lock()
		applied, ch := t.applied, t.changed
		t.mu.Unlock()
		if applied > off {
			return off, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %s to apply the write: %w", t.cfg.Topic, ctx.Err())
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
