package consumers

import (
	"context"

	"github.com/sluicehq/sluice/handlers"
)

// Source is where one handler's messages come from: its topic (and the
// handler's own replay and retry topics), read by one consumer group whose
// partitions are shared by every node running the handler. Kafka is the first implementation (KafkaSource); the engine knows
// nothing else about the queue behind it.
type Source interface {
	// Consume joins the group and calls session once for every assignment
	// this member receives, one at a time. session must return soon after
	// the Session's context is done, having drained and committed what it
	// could: only then are the partitions released to other members.
	// Consume returns nil when ctx is done, or an error it cannot recover
	// from; transient errors (broker unreachable, coordinator moved) are
	// retried inside it and told to report (nil once it recovers).
	Consume(ctx context.Context, session func(Session), report func(error)) error
}

// Session is one assignment of partitions to this member.
type Session interface {
	// Context is done when the assignment is revoked (a rebalance) or the
	// member is leaving.
	Context() context.Context
	// Assignments are the partitions this member owns in this session, each
	// with the position to read from: the committed offset, or one of
	// FirstOffset and LastOffset when the group has none.
	Assignments() []Assignment
	// Reader opens a reader for one assigned partition. The caller closes it.
	Reader(a Assignment) (PartitionReader, error)
	// Commit records, for each topic and partition, the offset of the next
	// message to process. It returns nil only when the broker has stored
	// every offset. It still works after Context is done, until session
	// returns.
	Commit(ctx context.Context, offsets map[string]map[int]int64) error
}

// Sentinel positions for Assignment.Offset.
const (
	FirstOffset int64 = -2
	LastOffset  int64 = -1
)

// Assignment is one partition owned by a session and where to start it.
type Assignment struct {
	Topic     string
	Partition int
	Offset    int64
	// Attempts is how many earlier sessions started the message at Offset
	// and ended without finishing it (a crash, a kill, a drain that timed
	// out), as an AttemptRecorder recorded it; 0 when none did.
	Attempts int
}

// AttemptRecorder is implemented by a Session that can record, durably and
// with the committed offset itself, that the message at offset is being
// started for the attempts-th consecutive session: the crash-loop guard.
// A message that crashes the node is in flight at every crash; its count,
// read back as Assignment.Attempts, is what stops it from being retried
// forever. Recording commits offset, so it must not be below the
// partition's committed offset.
type AttemptRecorder interface {
	RecordAttempt(ctx context.Context, topic string, partition int, offset int64, attempts int) error
}

// PartitionReader reads one partition in offset order.
type PartitionReader interface {
	// Fetch fills m with the next message, blocking until there is one or
	// ctx is done. It owns the retries of transient broker errors.
	Fetch(ctx context.Context, m *handlers.Message) error
	Close() error
}

// Settler is implemented by a PartitionReader of a queue that acknowledges
// each message instead of committing offsets (a WatermillSource). The
// engine calls Settle exactly once for every message it fetched and
// tracked: final is true once the message reached a final outcome (handled,
// or durably dead-lettered), and the queue may forget it; false when it was
// abandoned (a drain), and the queue should deliver it again.
type Settler interface {
	Settle(offset int64, final bool)
}
