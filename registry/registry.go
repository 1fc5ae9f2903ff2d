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
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/ktable"
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

// Config configures a Registry.
type Config struct {
	Topics  *topics.Client
	Brokers []string
	Dialer  *kafka.Dialer
	// Topic defaults to __sluice_handlers.
	Topic  string
	Logger *slog.Logger
}

// Registry is a node's view of the registry topic. Safe for concurrent use.
type Registry struct {
	t   *ktable.Table
	log *slog.Logger

	invalid atomic.Uint64

	mu      sync.Mutex
	entries map[string]Entry
}

// New returns a registry that is empty until Run has caught up.
func New(cfg Config) *Registry {
	if cfg.Topic == "" {
		cfg.Topic = Topic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registry{log: cfg.Logger, entries: make(map[string]Entry)}
	r.t = ktable.New(ktable.Config{
		Topics: cfg.Topics, Brokers: cfg.Brokers, Dialer: cfg.Dialer, Topic: cfg.Topic, Logger: cfg.Logger,
		Decode: r.decode,
	})
	return r
}

func (r *Registry) decode(name string, value []byte, offset int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if value == nil {
		delete(r.entries, name)
		return true
	}
	var e Entry
	if err := json.Unmarshal(value, &e); err != nil {
		return r.reject(name, offset, err)
	}
	if e.Spec.Name != name {
		return r.reject(name, offset, fmt.Errorf("the spec's name %q is not the record's key", e.Spec.Name))
	}
	// Entries written by an older version lack newer fields: fill in
	// their defaults, as a fresh apply would. Then the record is held to
	// what the API holds a spec to: the topic is writable by anyone with
	// a Kafka client, and an unchecked spec must never run.
	e.Spec.Normalize()
	if err := e.Spec.Validate(); err != nil {
		return r.reject(name, offset, err)
	}
	e.Version = offset
	r.entries[name] = e
	return true
}

// reject skips an invalid record: the handler keeps its last valid entry
// (or stays absent). Each record is read once per node, so it is logged
// once.
func (r *Registry) reject(name string, offset int64, err error) bool {
	r.invalid.Add(1)
	r.log.Error("skipping invalid registry record: it will not run", "offset", offset, "key", name, "err", err)
	return false
}

// Invalid counts the registry records this node skipped as unreadable or
// invalid.
func (r *Registry) Invalid() uint64 { return r.invalid.Load() }

// Run tails the registry topic until ctx is done; see ktable.Table.Run.
func (r *Registry) Run(ctx context.Context) error { return r.t.Run(ctx) }

// Loaded reports whether the registry has caught up, and the last read
// error, if any.
func (r *Registry) Loaded() (bool, error) { return r.t.Loaded() }

// Changed returns a channel closed at the next change (or load).
func (r *Registry) Changed() <-chan struct{} { return r.t.Changed() }

// Get returns the entry for name.
func (r *Registry) Get(name string) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[name]
	return e, ok
}

// List returns every entry, sorted by name.
func (r *Registry) List() []Entry {
	rows := r.t.Rows()
	out := make([]Entry, 0, len(rows))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range rows {
		if e, ok := r.entries[row.Key]; ok {
			out = append(out, e)
		}
	}
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
	off, err := r.t.Put(ctx, e.Spec.Name, b)
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
	_, err := r.t.Put(ctx, name, nil)
	return err
}
