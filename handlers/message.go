package handlers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Message is one record of a topic as a handler sees it. The engine owns it:
// a handler may read it during the invocation but must not keep it after
// returning, nor change Key, Value or Headers.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time
	// Attempt counts deliveries of this message to this handler within one
	// run of the engine, starting at 1.
	Attempt int
	// Ref is the source's own id of the message, for queues without
	// partitions and offsets (NATS, AMQP, Redis Streams, PostgreSQL): the
	// Watermill UUID the publisher set. Empty for Kafka, and for a queued
	// message that carries no id; then Partition and Offset identify it.
	Ref string
}

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// ID is the message's identity across every node and every retry:
// topic/partition/offset, or topic/ref for a queued message with a Ref. It
// is the CloudEvents ce-id.
func (m *Message) ID() string {
	if m.Ref != "" {
		return m.Topic + "/" + m.Ref
	}
	return FormatID(m.Topic, m.Partition, m.Offset)
}

// FormatID writes message coordinates the way ID does:
// topic/partition/offset.
func FormatID(topic string, partition int, offset int64) string {
	return topic + "/" + strconv.Itoa(partition) + "/" + strconv.FormatInt(offset, 10)
}

// ParseID reads coordinates written by FormatID. A topic may itself
// contain "/"; the last two fields are the partition and the offset.
func ParseID(id string) (topic string, partition int, offset int64, ok bool) {
	j := strings.LastIndexByte(id, '/')
	if j <= 0 {
		return "", 0, 0, false
	}
	i := strings.LastIndexByte(id[:j], '/')
	if i <= 0 {
		return "", 0, 0, false
	}
	p, err1 := strconv.Atoi(id[i+1 : j])
	o, err2 := strconv.ParseInt(id[j+1:], 10, 64)
	if err1 != nil || err2 != nil || p < 0 || o < 0 {
		return "", 0, 0, false
	}
	return id[:i], p, o, true
}

// Header returns the value of the first header named key, and whether there
// was one.
func (m *Message) Header(key string) ([]byte, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// Invoker delivers one message to a handler. Invoke returns nil when the
// handler succeeded; an error marked with Permanent when retrying cannot
// help; any other error is a retryable failure. Invoke must honour ctx and be
// safe for concurrent use.
type Invoker interface {
	Invoke(ctx context.Context, m *Message) error
}

// Func is a handler written in Go and compiled into the Sluice binary.
// Returning nil acknowledges the message; returning Permanent(err) sends it
// straight to the failure path without retries; any other error is retried.
type Func func(ctx context.Context, m *Message) error

// Invoke calls f, turning a panic into that message's failure so that one bad
// message cannot crash the node.
func (f Func) Invoke(ctx context.Context, m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r}
		}
	}()
	return f(ctx, m)
}

// PanicError is the failure of a Go handler that panicked.
type PanicError struct{ Value any }

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as a failure that retrying cannot fix. A nil err stays
// nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Headers Sluice sets on a message it moves to one of a handler's own
// topics: a replay from the dead-letter queue, or a delay topic.
const (
	// HeaderOriginal is the message's original topic/partition/offset; the
	// handler sees those coordinates, not the internal topic's.
	HeaderOriginal = "sluice-source"
	// HeaderReplayOf names the dead-letter entry replayed:
	// "<dead-letter topic>/<partition>-<offset>". Its failure carries it on
	// (dlq.HeaderReplayOf), so it is a new entry, not a duplicate.
	HeaderReplayOf = "sluice-replay-of"
	// HeaderRetryStage is which delay topic (1-based) holds the message.
	HeaderRetryStage = "sluice-retry-stage"
	// HeaderRetryDue is when (Unix milliseconds) a parked message is due.
	HeaderRetryDue = "sluice-retry-due"
	// HeaderRetryAttempts counts the attempts made before parking.
	HeaderRetryAttempts = "sluice-retry-attempts"
	// HeaderRetryFirstFailure is the first failure's time (RFC 3339).
	HeaderRetryFirstFailure = "sluice-retry-first-failure"
)
