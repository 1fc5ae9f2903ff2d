package consumers

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// DeadLetterer writes a message that cannot be handled to a dead-letter
// topic. It returns nil only once the message is durably written (acks
// from all in-sync replicas): only then is the source offset committed past
// it.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, topic string, m *handlers.Message, f Failure) error
}

// Failure is why and how a message failed.
type Failure struct {
	Handler      string
	Attempts     int
	FirstFailure time.Time
	LastFailure  time.Time
	// Err is the last failure.
	Err error
	// Status is the last HTTP status, 0 for none.
	Status int
}

// Parker moves a message that used its in-place attempts to a delay topic
// (retry mode topics), to be retried from there when due. Like
// DeadLetter, it returns nil only once the message is durably written.
type Parker interface {
	Park(ctx context.Context, topic string, m *handlers.Message, stage int, due time.Time, f Failure) error
}
