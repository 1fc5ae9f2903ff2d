package registry

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"testing"
)

// FuzzDecode: any record read from the registry topic (writable by anyone
// with a Kafka client) is admitted or skipped, never a panic. A skipped
// record leaves every entry as it was and is counted once. An admitted one
// is held to what the API holds a spec to (valid, named by its key,
// versioned by its offset), and reads back the same from what it writes.
func FuzzDecode(f *testing.F) {
	for _, s := range []struct{ key, value string }{
		{"keep", `{"spec":{"name":"keep","topic":"t","http":{"url":"http://h/"}},"paused":true,"updatedAt":"2026-01-01T00:00:00Z"}`},
		{"a", `{"spec":{"name":"a","topic":"t","http":{"url":"http://h/"}},"paused":false}`},
		{"a", `{"spec":{"name":"a","topic":"t","go":{},"ordering":"none","retry":{"mode":"topics","delays":["10s"]}}}`},
		{"a", `{"spec":{"name":"a","topic":"t","http":{"url":"https://u:p@h/","headers":{"A":"1"},"timeout":"1s","signing":{"secretRef":"env:S"}},"batch":{"size":10}}}`},
		{"a", `{"spec":{"name":"a","topic":"t","http":{"url":"http://h/"},"filter":{"value":{"price":[{"numeric":[">",10]}]}},"onSuccess":{"topic":"u"}}}`},
		{"a", `{"spec":{"name":"a","topic":"t","http":{"url":"http://h/"},"concurrency":{"min":2,"max":8},"rateLimit":0.5,"scaling":{"maxAge":"1m"}}}`},
		{"a", `{"spec":{"name":"a","topic":"t","http":{"url":"http://h/"},"startFrom":{"group":"legacy"}}}`},
		{"a", `{"spec":{"name":"a","topic":"t","source":"nats","http":{"url":"http://h/"}}}`},
		{"keep", `{"spec":{"name":"keep","topic":"__sluice_handlers","http":{"url":"http://h/"}}}`},
		{"keep", `{"spec":{"name":"other","topic":"t","http":{"url":"http://h/"}}}`},
		{"keep", `not json`}, {"keep", `{}`}, {"keep", `null`}, {"keep", `[]`},
		{"keep", `{"spec":{"name":"keep","topic":"t","http":{"url":"http://h/"},"deadLetter":{"topic":"__sluice_dlq_state"}}}`},
	} {
		f.Add(s.key, []byte(s.value), false)
	}
	f.Add("keep", []byte(nil), true) // a tombstone
	f.Fuzz(func(t *testing.T, key string, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		r := newTestRegistry()
		if !r.decode("keep", []byte(`{"spec":{"name":"keep","topic":"t","http":{"url":"http://h/"}},"paused":true}`), 1) {
			t.Fatal("the fixture was refused")
		}
		before := maps.Clone(r.entries)
		ok := r.decode(key, value, 42)
		if !ok {
			if r.Invalid() != 1 {
				t.Fatalf("a skipped record counted %d times", r.Invalid())
			}
			if !reflect.DeepEqual(before, r.entries) {
				t.Fatalf("a skipped record changed the entries: %+v, was %+v", r.entries, before)
			}
			return
		}
		if r.Invalid() != 0 {
			t.Fatalf("an admitted record was counted invalid")
		}
		if value == nil {
			if _, ok := r.entries[key]; ok || len(r.entries) != len(before)-btoi(before[key].Spec.Name != "") {
				t.Fatalf("a tombstone for %q left %+v", key, r.entries)
			}
			return
		}
		e, found := r.entries[key]
		switch {
		case !found:
			t.Fatalf("admitted %q but no entry", key)
		case e.Spec.Name != key:
			t.Fatalf("admitted the spec %q under the key %q", e.Spec.Name, key)
		case e.Version != 42:
			t.Fatalf("version %d, want the offset 42", e.Version)
		}
		if err := e.Spec.Validate(); err != nil {
			t.Fatalf("admitted an invalid spec: %v", err)
		}
		for k, v := range before {
			if k != key && !reflect.DeepEqual(r.entries[k], v) {
				t.Fatalf("a record for %q changed the entry %q", key, k)
			}
		}
		// What the node writes back for this entry (an apply, a pause)
		// reads back as the same entry.
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		r2 := newTestRegistry()
		if !r2.decode(key, b, 43) {
			t.Fatalf("the registry refused what it wrote: %s", b)
		}
		b2, _ := json.Marshal(r2.entries[key])
		if !bytes.Equal(b, b2) {
			t.Fatalf("read back differently:\n%s\n%s", b, b2)
		}
	})
}

func newTestRegistry() *Registry {
	return &Registry{log: slog.New(slog.NewTextHandler(io.Discard, nil)), entries: map[string]Entry{}}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
