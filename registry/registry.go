// Package registry keeps the handler specs of a fleet in a compacted Kafka
// topic, as Kafka Connect and Schema Registry keep their state: the record
// key is the handler name, the value its spec and state (a tombstone
// deletes it). Every node tails the topic and converges on the same view;
// there is no second database.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// Topic is the default registry topic.
const Topic = "__sluice_handlers"

// ErrNotFound is returned for a handler that is not registered.
var ErrNotFound = errors.New("handler not found")

// Entry is a registered handler.
type Entry struct {
	Spec      handlers.Spec `json:"spec"`
	Paused    bool          `json:"paused"`
	UpdatedAt time.Time     `json:"updatedAt"`
	// Version is the registry offset of this entry's record; it grows with
	// every change.
	Version int64 `json:"-"`
}

// Registry is a node's view of the registry topic. Safe for concurrent use.
type Registry struct {
	tc      *topics.Client
	brokers []string
	dialer  *kafka.Dialer
	topic   string
	log     *slog.Logger

	mu      sync.Mutex
	entries map[string]Entry
	applied int64         // offset of the next record to apply
	changed chan struct{} // closed and replaced on every applied record
	loaded  bool
	readErr error
}

// Config configures a Registry.
type Config struct {
	Topics  *topics.Client
	Brokers []string
	Dialer  *kafka.Dialer
	// Topic defaults to __sluice_handlers.
	Topic  string
	Logger *slog.Logger
}

// New returns a registry that is empty until Run has caught up.
func New(cfg Config) *Registry {
	if cfg.Topic == "" {
		cfg.Topic = Topic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Registry{
		tc: cfg.Topics, brokers: cfg.Brokers, dialer: cfg.Dialer, topic: cfg.Topic, log: cfg.Logger,
		entries: make(map[string]Entry), changed: make(chan struct{}),
	}
}

// Run creates the registry topic if needed and tails it until ctx is done,
// retrying while the broker is unreachable.
func (r *Registry) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for {
		err := r.tc.Ensure(ctx, r.topic, 1, map[string]string{"cleanup.policy": "compact"})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		r.setErr(fmt.Errorf("creating registry topic %s: %w", r.topic, err))
		r.log.Warn("registry topic not reachable; retrying", "topic", r.topic, "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	end, err := r.endOffset(ctx)
	for err != nil {
		if ctx.Err() != nil {
			return nil
		}
		r.setErr(err)
		r.log.Warn("reading registry end offset failed; retrying", "err", err)
		if !sleep(ctx, time.Second) {
			return nil
		}
		end, err = r.endOffset(ctx)
	}
	if end == 0 {
		r.markLoaded()
	}
	rd := kafka.NewReader(kafka.ReaderConfig{
		Brokers: r.brokers, Dialer: r.dialer, Topic: r.topic, Partition: 0,
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 50 * time.Millisecond, StartOffset: kafka.FirstOffset,
	})
	defer rd.Close()
	for {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.setErr(err)
			r.log.Warn("reading registry failed; retrying", "err", err)
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		r.apply(m)
		if m.Offset+1 >= end {
			r.markLoaded()
		}
	}
}

func (r *Registry) endOffset(ctx context.Context) (int64, error) {
	offs, err := r.tc.Offsets(ctx, r.topic, 1)
	if err != nil {
		return 0, err
	}
	return offs[0].End, nil
}

func (r *Registry) apply(m kafka.Message) {
	name := string(m.Key)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(m.Value) == 0 {
		delete(r.entries, name)
	} else {
		var e Entry
		if err := json.Unmarshal(m.Value, &e); err != nil || e.Spec.Name != name {
			r.log.Error("skipping unreadable registry record", "offset", m.Offset, "key", name, "err", err)
		} else {
			e.Version = m.Offset
			r.entries[name] = e
		}
	}
	r.applied = m.Offset + 1
	r.readErr = nil
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Registry) markLoaded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.loaded {
		r.loaded = true
		close(r.changed)
		r.changed = make(chan struct{})
	}
}

func (r *Registry) setErr(err error) {
	r.mu.Lock()
	r.readErr = err
	r.mu.Unlock()
}

// Loaded reports whether the registry has caught up with the topic as it was
// when Run started, and the last read error, if any.
func (r *Registry) Loaded() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loaded, r.readErr
}

// Changed returns a channel closed at the next change (or load).
func (r *Registry) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Get returns the entry for name.
func (r *Registry) Get(name string) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[name]
	return e, ok
}

// List returns every entry, sorted by name.
func (r *Registry) List() []Entry {
	r.mu.Lock()
	out := make([]Entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out
}

// Put writes e (stamped with the current time) and returns once this node
// has applied it, so a read after Put sees it.
func (r *Registry) Put(ctx context.Context, e Entry) (Entry, error) {
	e.UpdatedAt = time.Now().UTC().Truncate(time.Millisecond)
	b, err := json.Marshal(e)
	if err != nil {
		return Entry{}, err
	}
	off, err := r.write(ctx, e.Spec.Name, b)
	if err != nil {
		return Entry{}, err
	}
	e.Version = off
	return e, nil
}

// Delete removes name and returns once this node has applied it.
func (r *Registry) Delete(ctx context.Context, name string) error {
	if _, ok := r.Get(name); !ok {
		return ErrNotFound
	}
	_, err := r.write(ctx, name, nil)
	return err
}

func (r *Registry) write(ctx context.Context, name string, value []byte) (int64, error) {
	res, err := r.tc.Produce(ctx, r.topic, []topics.Record{{Key: []byte(name), Value: value, Partition: 0}})
	if err != nil {
		return 0, fmt.Errorf("writing registry: %w", err)
	}
	off := res[0].Offset
	for {
		r.mu.Lock()
		applied, ch := r.applied, r.changed
		r.mu.Unlock()
		if applied > off {
			return off, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for the registry to apply the write: %w", ctx.Err())
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
