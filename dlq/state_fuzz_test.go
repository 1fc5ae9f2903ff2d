package dlq

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

// FuzzCheckState: any record read from the state topic (writable by anyone
// with a Kafka client) is admitted or skipped, never a panic; a skipped one
// is counted once; an admitted one names an entry of a valid handler and,
// unless it is a tombstone, holds a known state and a time that the read
// path (decode) reads back as such.
func FuzzCheckState(f *testing.F) {
	for _, s := range []struct{ key, value string }{
		{"orders/3-1042", `{"state":"replayed","at":"2026-01-01T00:00:00Z"}`},
		{"orders/0-0", `{"state":"discarded","at":"2026-11-25T20:48:39.714123Z"}`},
		{"orders/0-0", `{"state":"dead","at":"2026-01-01T00:00:00+02:00"}`},
		{"orders/0-0", `{"state":"gone","at":"2026-01-01T00:00:00Z"}`},
		{"orders/0-0", `{"state":"dead"}`},
		{"orders/0-0", `{"state":"dead","at":"2026-01-01T00:00:00Z","x":1}`},
		{"orders/x-y", `{"state":"dead","at":"2026-01-01T00:00:00Z"}`},
		{"Orders/1-1", `{"state":"dead","at":"2026-01-01T00:00:00Z"}`},
		{"orders", `{}`}, {"orders/1-1", `[1,2,3]`}, {"orders/1-1", `null`}, {"/", ""}, {"a/-1-2", "{}"},
	} {
		f.Add(s.key, []byte(s.value), false)
	}
	f.Add("orders/1-1", []byte(nil), true) // a tombstone
	for _, s := range []struct{ key, value string }{
		{"orders/orders.dlq/3-1042", `{"state":"replayed","at":"2026-01-01T00:00:00Z"}`},
		{"orders/__sluice_handlers/0-0", `{"state":"dead","at":"2026-01-01T00:00:00Z"}`},
		{"orders/orders.dlq/0-0", `{"state":"dead","at":"2026-01-01T00:00:00Z"} }`},
		{"orders/orders.dlq/0-0", `{"state":"dead","at":"2026-01-01T00:00:00Z"} {}`},
		{"topic:orders/orders.dlq", `{"state":"retired","at":"2026-01-01T00:00:00Z"}`},
		{"job:orders/x", `{}`},
	} {
		f.Add(s.key, []byte(s.value), false)
	}
	f.Fuzz(func(t *testing.T, key string, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		q := &Queue{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ok := q.checkState(key, value, 7)
		if got := q.InvalidStates(); ok && got != 0 || !ok && got != 1 {
			t.Fatalf("admitted=%v but %d invalid records counted", ok, got)
		}
		if !ok {
			return
		}
		kind, handler, _, _, err := parseStateKey(key)
		if err != nil || handlers.ValidateName(handler) != nil {
			t.Fatalf("admitted a record whose key %q names no entry, topic or job of a valid handler: %v", key, err)
		}
		if kind == keyJob {
			if value != nil {
				var j Job
				if err := json.Unmarshal(value, &j); err != nil {
					t.Fatalf("admitted job %q, which the read path cannot decode: %v", value, err)
				}
			}
			return
		}
		if value == nil {
			return
		}
		// The read path reads the record with json.Unmarshal; it must find
		// what checkState found.
		var st stateRecord
		if err := json.Unmarshal(value, &st); err != nil {
			t.Fatalf("admitted %q, which the read path cannot decode: %v", value, err)
		}
		if kind == keyTopic {
			if st.State != StateRetired || st.At.IsZero() {
				t.Fatalf("admitted %q on a topic key: state %q at %v", value, st.State, st.At)
			}
			return
		}
		if st.State != StateDead && st.State != StateReplayed && st.State != StateDiscarded || st.At.IsZero() {
			t.Fatalf("admitted %q: state %q at %v", value, st.State, st.At)
		}
	})
}
