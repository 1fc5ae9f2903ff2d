package api

import (
	"errors"
	"time"
)

// The wire types of the API's answers about the engine, the dead-letter
// queue and topics. The API owns them, so that the client and the CLI link
// no Kafka code: the node (package sluice) converts its parts' types into
// these.

// RunnerStatus is a snapshot of this node's runner of a handler.
type RunnerStatus struct {
	// StateSince is when the state began; with starting, rejoining and
	// stalled it says how long the group has been re-forming.
	StateSince    time.Time `json:"stateSince"`
	LastError     string    `json:"lastError,omitempty"`
	InFlight      int       `json:"inFlight"`
	InFlightBytes int64     `json:"inFlightBytes"`
	// Held counts fetched messages not yet finished: those in flight and
	// those queued behind a running message of their key or partition.
	Held         int               `json:"held"`
	Limit        int               `json:"concurrencyLimit"`
	Received     uint64            `json:"received"`
	Succeeded    uint64            `json:"succeeded"`
	Failed       uint64            `json:"failed"`
	Retried      uint64            `json:"retried"`
	DeadLettered uint64            `json:"deadLettered"`
	Parked       uint64            `json:"parked,omitempty"`
	Replayed     uint64            `json:"replayed"`
	Commits      uint64            `json:"commits"`
	CommitErrs   uint64            `json:"commitErrors"`
	Rebalances   uint64            `json:"rebalances"`
	Breaker      *BreakerStatus    `json:"breaker,omitempty"`
	Partitions   []PartitionStatus `json:"partitions"`

	// Filtered counts messages that did not match the handler's filter:
	// committed without an invocation.
	Filtered uint64 `json:"filtered"`
	// Emitted counts outputs produced to the handler's onSuccess topic.
	Emitted uint64 `json:"emitted"`
}

// BreakerStatus is a handler's circuit breaker on this node.
type BreakerStatus struct {
	// State is closed, half-open, open or disabled.
	State     string    `json:"state"`
	ChangedAt time.Time `json:"changedAt"`
	Opened    uint64    `json:"opened"`
}

// PartitionStatus is one partition this node's runner owns.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Committed int64  `json:"committed"`
	Fetched   int64  `json:"fetched"`
	Pending   int    `json:"pending"`
}

// Dead-letter entry states.
const (
	StateDead      = "dead"
	StateReplayed  = "replayed"
	StateDiscarded = "discarded"
)

// DeadLetter is one dead-letter entry.
type DeadLetter struct {
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
	// SourceRef is, for a queued message with a Watermill UUID, that UUID
	// (its source partition and offset are then -1).
	SourceRef string `json:"sourceRef,omitempty"`
	// ReplayOf is, for the failure of a replayed message, the entry
	// ("<topic>/<partition>-<offset>") whose replay failed: a new entry,
	// not a duplicate of that one.
	ReplayOf string `json:"replayOf,omitempty"`
	// Duplicates are the ids of further records of the same source message
	// (a retried dead-letter write, a crash before the commit). They are
	// not entries of their own: they share this entry's state, are not
	// replayed again, and are marked with it.
	Duplicates []string `json:"duplicates,omitempty"`
	// DuplicateOf, on a get by the id of such a further record, is the
	// entry it belongs to.
	DuplicateOf    string    `json:"duplicateOf,omitempty"`
	FirstFailure   time.Time `json:"firstFailure"`
	LastFailure    time.Time `json:"lastFailure"`
	State          string    `json:"state"`
	StateChangedAt time.Time `json:"stateChangedAt,omitzero"`
	// Show only: the payload and the original headers.
	Value       *string           `json:"value,omitempty"`
	ValueBase64 string            `json:"valueBase64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
}

// DeadLetterPage is GET /v1/handlers/{name}/dlq.
type DeadLetterPage struct {
	Entries []DeadLetter `json:"entries"`
	// Total is how many entries matched (within the scan limit).
	Total int `json:"total"`
	// Next is the offset of the next page, 0 when there is none.
	Next int `json:"next,omitempty"`
	// DuplicateRecords counts the further records of the matched entries
	// (see DeadLetter.Duplicates).
	DuplicateRecords int `json:"duplicateRecords,omitempty"`
}

// DeadLetterFilter selects the entries of a list (query parameters).
type DeadLetterFilter struct {
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

// Selection names the dead-letter entries to replay or purge.
type Selection struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
	// Force replays entries named by id that are not dead (already
	// replayed or discarded); without it they are a conflict (409).
	Force bool `json:"force,omitempty"`
}

// Record is one message to publish, decoded from a PublishMessage.
type Record struct {
	// Key picks the partition (murmur2, as the Java client); nil spreads
	// keyless records.
	Key     []byte
	Value   []byte
	Headers []Header
	// Partition forces a partition when >= 0; -1 lets the key decide.
	Partition int
}

// Header is one message header.
type Header struct {
	Key   string
	Value []byte
}

// Produced is where a published message landed.
type Produced struct {
	// Partition and Offset are where a Kafka record landed; -1 on a queue.
	Partition int   `json:"partition"`
	Offset    int64 `json:"offset"`
	// ID is, on a queue, the message's Watermill UUID (the handler's ce-id
	// is topic/ID).
	ID string `json:"id,omitempty"`
}

// TopicInfo is one topic of GET /v1/topics.
type TopicInfo struct {
	Name       string  `json:"name"`
	Partitions int     `json:"partitions"`
	EndOffsets []int64 `json:"endOffsets,omitempty"`
	Messages   int64   `json:"messages"`
	Internal   bool    `json:"internal,omitempty"`
}

// More errors a Backend returns that map to HTTP statuses.
var (
	// ErrTopicExists is a topic created twice (409).
	ErrTopicExists = errors.New("topic already exists")
	// ErrNoPartition is a publish to a partition the topic does not have
	// (400).
	ErrNoPartition = errors.New("no such partition")
	// ErrTooLarge is a message larger than the broker accepts (413).
	ErrTooLarge = errors.New("too large")
)
