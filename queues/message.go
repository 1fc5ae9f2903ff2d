package queues

import (
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/handlers"
)

// message.go: one mapping between a Watermill message and the engine's
// handlers.Message, for every queue (each queue's own mapping to Watermill
// is in its file).
//
//   - Value is the payload.
//   - Key is the metadata entry KeyHeader ("key"), removed from the
//     headers. Messages without it have no key.
//   - Headers are the other metadata entries, sorted by name.
//   - Ref is the Watermill UUID, when the writer set one (a Watermill
//     publisher, Sluice's own publish, a replay): the handler's ce-id is
//     then topic/uuid on every delivery. A message without one gets
//     topic/0/n, n counting the messages of the node's current assignment.

// KeyHeader is the header (Watermill metadata entry) that carries a queued
// message's key.
const KeyHeader = "key"

// Bounds on what is read back from a queue: a record written by any
// client must not cost unbounded memory, and its text must be valid.
const (
	maxHeaders     = 256
	maxHeaderBytes = 64 << 10
	maxRefBytes    = 200
)

// Decode fills m from wm (see the mapping above). It accepts anything:
// headers beyond maxHeaders, or longer than maxHeaderBytes, are dropped,
// and a Ref that is not short valid text is ignored.
func Decode(wm *message.Message, m *handlers.Message) {
	m.Value = wm.Payload
	if wm.UUID != "" && len(wm.UUID) <= maxRefBytes && utf8.ValidString(wm.UUID) && !strings.ContainsAny(wm.UUID, "/\r\n") {
		m.Ref = wm.UUID
	}
	names := make([]string, 0, len(wm.Metadata))
	for k := range wm.Metadata {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := wm.Metadata[k]
		if k == KeyHeader {
			m.Key = []byte(v)
			continue
		}
		if len(m.Headers) >= maxHeaders || len(k)+len(v) > maxHeaderBytes || k == "" {
			continue
		}
		m.Headers = append(m.Headers, handlers.Header{Key: k, Value: []byte(v)})
	}
}

// Encode is the Watermill message for a record to publish: the reverse of
// Decode, with a new UUID unless id is set.
func Encode(id string, key, value []byte, headers []handlers.Header) *message.Message {
	if id == "" {
		id = watermill.NewUUID()
	}
	wm := message.NewMessage(id, value)
	for _, h := range headers {
		wm.Metadata.Set(h.Key, string(h.Value))
	}
	if key != nil {
		wm.Metadata.Set(KeyHeader, string(key))
	}
	return wm
}
