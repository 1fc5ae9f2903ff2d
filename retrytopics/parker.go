// Package retrytopics parks messages on a handler's delay topics, for
// retry mode "topics": a message that used its in-place attempts is written
// to the delay topic of its next stage, with a due time, and the handler's
// own group reads it again from there when it is due (consumers/fetch.go),
// so a retrying message never holds up the ones behind it.
package retrytopics

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// Parker writes parked messages.
type Parker struct{ tc *topics.Client }

// New returns a Parker that produces through tc.
func New(tc *topics.Client) *Parker { return &Parker{tc: tc} }

var _ consumers.Parker = (*Parker)(nil)

// Park writes m to the delay topic of stage (1-based), due at due, keeping
// its original coordinates and the attempts so far. It returns once all
// in-sync replicas have it.
func (p *Parker) Park(ctx context.Context, topic string, m *handlers.Message, stage int, due time.Time, f consumers.Failure) error {
	keep := func(k string) bool {
		switch k {
		case handlers.HeaderOriginal, handlers.HeaderRetryStage, handlers.HeaderRetryDue, handlers.HeaderRetryAttempts, handlers.HeaderRetryFirstFailure:
			return false
		}
		return true
	}
	rec := topics.Forward(m.Key, m.Value, topics.KafkaHeaders(m.Headers), keep,
		kafka.Header{Key: handlers.HeaderOriginal, Value: []byte(m.ID())},
		kafka.Header{Key: handlers.HeaderRetryStage, Value: []byte(strconv.Itoa(stage))},
		// Rounded up to the millisecond: a parked message never comes back
		// before its delay (rounded down, it could by up to 1ms).
		kafka.Header{Key: handlers.HeaderRetryDue, Value: []byte(strconv.FormatInt(due.Add(time.Millisecond-1).UnixMilli(), 10))},
		kafka.Header{Key: handlers.HeaderRetryAttempts, Value: []byte(strconv.Itoa(f.Attempts))},
		kafka.Header{Key: handlers.HeaderRetryFirstFailure, Value: []byte(f.FirstFailure.UTC().Format(time.RFC3339Nano))},
	)
	if _, err := p.tc.Produce(ctx, topic, []topics.Record{rec}); err != nil {
		return fmt.Errorf("parking %s on %s: %w", m.ID(), topic, err)
	}
	return nil
}
