package queues

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/topics"
)

// dlq_amqp.go: a dead-letter topic on RabbitMQ is a durable stream queue
// (x-queue-type: stream) named as the topic. A classic queue cannot be
// listed without taking its messages; a stream is a log that consumers
// read from any offset, and reading it removes nothing (an ack on a stream
// only gives the consumer credit for more deliveries).
//
// A record is published as Sluice publishes to a queue: to the default
// exchange with the topic as routing key, persistent, with the confirms
// awaited together. The body is the value; every header is a text header;
// the header "key" is the key and _watermill_message_uuid a new UUID, as
// watermill-amqp writes them; the timestamp property is the time written
// (whole seconds, as AMQP carries it). So the queue's ordinary tools, and
// any stream consumer, read the dead letters as messages.
//
// The offset of a record is the stream's own: RabbitMQ numbers a stream's
// messages 0, 1, 2, ... and gives each delivery its number in the header
// x-stream-offset (replacing any a publisher set). A consumer started with
// x-stream-offset = from is given the messages from there on. Publisher
// confirms do not say where a message landed, so Produce reports offset -1.
//
// RabbitMQ 3.10 does not say, through AMQP 0-9-1, where a stream ends: a
// passive queue.declare counts 0 messages on a stream, basic.get is not
// implemented for streams, and a stream consumer that reaches the end just
// waits for more. So the end is found by reading: a consumer started at
// "last" is given the stream's last chunk (a chunk is written in one go,
// and is delivered in one burst), and the end is one past the last
// delivery once none has come for dlqIdle. A Read stops at once when it
// has given the record at to-1, and after dlqIdle without a delivery when
// the stream ends before to; Start is the first delivery from "first".
//
// The queue must be a stream: a consumer of a classic queue takes the
// messages it acknowledges. Before a read, a declare of the topic with
// x-queue-type stream checks it (RabbitMQ refuses it with "inequivalent
// arg 'x-queue-type'" on a queue of another type), and a read stops with
// an error, acknowledging nothing more, at a delivery without the offset
// that RabbitMQ sets on every stream delivery.

const (
	// dlqPrefetch is a dead-letter consumer's credit (RabbitMQ refuses a
	// stream consumer without one); dlqAckEvery is how often the credit
	// is given back, by one ack of everything delivered so far.
	dlqPrefetch = 500
	dlqAckEvery = 200
)

// dlqIdle is how long a reader waits for a delivery before it takes the
// stream to have ended (see above). Deliveries of a stored stream come in
// bursts well under a millisecond apart on a local server.
var dlqIdle = 250 * time.Millisecond

// dlqOffsetsBound bounds how long Offsets reads the stream's end while
// records keep being written.
const dlqOffsetsBound = 3 * time.Second

// dlqStream checks that topic is a stream queue. When it does not exist,
// it creates it if create, else returns an error wrapping
// topics.ErrUnknownTopic. Each declare has a channel of its own: RabbitMQ
// closes a channel on a refused one.
func (d *amqpDriver) dlqStream(ctx context.Context, topic string, create bool) error {
	exists, err := d.dlqDeclare(ctx, topic, true)
	if err != nil {
		return err
	}
	if !exists && !create {
		return fmt.Errorf("%w: no RabbitMQ queue %s", topics.ErrUnknownTopic, topic)
	}
	// Declaring a queue of another type with x-queue-type stream is
	// refused on that argument. A stream declared with arguments of its
	// own (x-max-age, x-max-length-bytes, ...) is refused on those
	// instead: it is a stream all the same, and it stays as it is.
	_, err = d.dlqDeclare(ctx, topic, false)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
		if strings.Contains(ae.Reason, "'x-queue-type'") {
			return fmt.Errorf("RabbitMQ queue %s is not a stream queue, so it cannot be read without consuming it: %w", topic, err)
		}
		return nil
	}
	return err
}

// dlqDeclare declares topic as a durable stream queue, or only checks
// that it exists (passive), and says whether it does.
func (d *amqpDriver) dlqDeclare(ctx context.Context, topic string, passive bool) (bool, error) {
	ch, err := d.control(ctx)
	if err != nil {
		return false, err
	}
	defer ch.Close()
	if passive {
		_, err = ch.QueueDeclarePassive(topic, true, false, false, false, nil)
	} else {
		_, err = ch.QueueDeclare(topic, true, false, false, false, amqp.Table{"x-queue-type": "stream"})
	}
	var ae *amqp.Error
	if passive && errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("declaring stream queue %s: %w", topic, err)
	}
	return true, nil
}

func (d *amqpDriver) dlqPartitions(ctx context.Context, topic string) (int, error) {
	if err := d.dlqStream(ctx, topic, false); err != nil {
		return 0, err
	}
	return 1, nil
}

// dlqOffsets reads the first delivery from "first" and the last chunk
// from "last", at once on one channel, so that an empty stream costs one
// wait of dlqIdle, not two.
func (d *amqpDriver) dlqOffsets(ctx context.Context, topic string) (topics.Range, error) {
	if err := d.dlqStream(ctx, topic, false); err != nil {
		return topics.Range{}, err
	}
	ch, err := d.dlqChannel(ctx)
	if err != nil {
		return topics.Range{}, err
	}
	defer ch.Close()
	firstTag := "sluice-dlq-first-" + watermill.NewShortUUID()
	first, err := ch.Consume(topic, firstTag, false, false, false, false, amqp.Table{"x-stream-offset": "first"})
	if err != nil {
		return topics.Range{}, fmt.Errorf("reading stream queue %s: %w", topic, err)
	}
	last, err := ch.Consume(topic, "sluice-dlq-last-"+watermill.NewShortUUID(), false, false, false, false, amqp.Table{"x-stream-offset": "last"})
	if err != nil {
		return topics.Range{}, fmt.Errorf("reading stream queue %s: %w", topic, err)
	}
	start, end := int64(-1), int64(-1)
	n := 0
	idle := time.NewTimer(dlqIdle)
	defer idle.Stop()
	// While records keep coming the end moves on: one past the last seen
	// within the bound is an end the stream had.
	bound := time.NewTimer(dlqOffsetsBound)
	defer bound.Stop()
	for first != nil || last != nil {
		var dl amqp.Delivery
		var ok, fromFirst bool
		select {
		case <-ctx.Done():
			return topics.Range{}, ctx.Err()
		case <-idle.C:
			first, last = nil, nil
			continue
		case <-bound.C:
			first, last = nil, nil
			continue
		case dl, ok = <-first:
			fromFirst = true
		case dl, ok = <-last:
		}
		if !ok {
			return topics.Range{}, fmt.Errorf("reading stream queue %s: %w", topic, errClosedDeliveries)
		}
		off, isStream := streamOffset(dl)
		if !isStream {
			return topics.Range{}, fmt.Errorf("RabbitMQ queue %s is not a stream queue: a delivery has no x-stream-offset", topic)
		}
		if fromFirst {
			start, first = off, nil // one is enough
			_ = ch.Cancel(firstTag, true)
		}
		end = max(end, off+1)
		if n++; n%dlqAckEvery == 0 {
			if err := ch.Ack(dl.DeliveryTag, true); err != nil {
				return topics.Range{}, err
			}
		}
		resetTimer(idle, dlqIdle)
	}
	if end < 0 { // empty
		return topics.Range{}, nil
	}
	if start < 0 || start > end {
		start = end - 1
	}
	return topics.Range{Start: start, End: end}, nil
}

func (d *amqpDriver) dlqRead(ctx context.Context, topic string, from, to int64, fn func(topics.Message) bool) error {
	if from < 0 {
		from = 0
	}
	if from >= to {
		return nil
	}
	if err := d.dlqStream(ctx, topic, false); err != nil {
		return err
	}
	ch, err := d.dlqChannel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	tag := "sluice-dlq-read-" + watermill.NewShortUUID()
	deliveries, err := ch.Consume(topic, tag, false, false, false, false, amqp.Table{"x-stream-offset": from})
	if err != nil {
		return fmt.Errorf("reading stream queue %s: %w", topic, err)
	}
	defer func() { _ = ch.Cancel(tag, false) }()
	idle := time.NewTimer(dlqIdle)
	defer idle.Stop()
	for n := 1; ; n++ {
		var dl amqp.Delivery
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle.C:
			return nil // the stream ends before to
		case dl, ok = <-deliveries:
		}
		if !ok {
			return fmt.Errorf("reading stream queue %s: %w", topic, errClosedDeliveries)
		}
		off, isStream := streamOffset(dl)
		if !isStream {
			return fmt.Errorf("RabbitMQ queue %s is not a stream queue: a delivery has no x-stream-offset", topic)
		}
		if off >= to {
			return nil
		}
		// RabbitMQ starts at the chunk that holds from; skip what comes
		// before it, should it be given.
		if off >= from {
			if !fn(dlqMessage(off, dl)) || off >= to-1 {
				return nil
			}
		}
		if n%dlqAckEvery == 0 {
			if err := ch.Ack(dl.DeliveryTag, true); err != nil {
				return err
			}
		}
		resetTimer(idle, dlqIdle)
	}
}

// dlqChannel is a channel for a stream consumer: a stream refuses one
// without a prefetch.
func (d *amqpDriver) dlqChannel(ctx context.Context) (*amqp.Channel, error) {
	ch, err := d.control(ctx)
	if err != nil {
		return nil, err
	}
	if err := ch.Qos(dlqPrefetch, 0, false); err != nil {
		ch.Close()
		return nil, err
	}
	return ch, nil
}

func (d *amqpDriver) dlqProduce(ctx context.Context, topic string, recs []topics.Record) ([]topics.Produced, error) {
	if err := d.dlqStream(ctx, topic, true); err != nil {
		return nil, err
	}
	ch, err := d.control(ctx)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("rabbitmq at %s: confirms: %w", redactURL(d.cfg.AMQPURL), err)
	}
	// Mandatory: a record that reaches no queue (the stream deleted
	// meanwhile) comes back rather than being confirmed and lost.
	returns := ch.NotifyReturn(make(chan amqp.Return, len(recs)))
	now := time.Now()
	confs := make([]*amqp.DeferredConfirmation, 0, len(recs))
	for _, r := range recs {
		h := make(amqp.Table, len(r.Headers)+2)
		for _, x := range r.Headers {
			if x.Key != "" {
				h[x.Key] = string(x.Value)
			}
		}
		if r.Key != nil {
			h[KeyHeader] = string(r.Key)
		}
		h[wmamqp.DefaultMessageUUIDHeaderKey] = watermill.NewUUID()
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", topic, true, false, amqp.Publishing{
			Headers:      h,
			DeliveryMode: amqp.Persistent,
			Timestamp:    now,
			Body:         r.Value,
		})
		if err != nil {
			return nil, fmt.Errorf("publishing to stream queue %s: %w", topic, err)
		}
		confs = append(confs, c)
	}
	for i, c := range confs {
		ok, err := c.WaitContext(ctx)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("rabbitmq refused dead letter %d of %d for %s", i+1, len(recs), topic)
		}
	}
	if n := len(returns); n > 0 {
		ret := <-returns
		return nil, fmt.Errorf("%d dead letters for %s reached no queue: %d %s", n, topic, ret.ReplyCode, ret.ReplyText)
	}
	out := make([]topics.Produced, len(recs))
	for i := range out {
		out[i] = topics.Produced{Partition: 0, Offset: -1} // confirms carry no offset
	}
	return out, nil
}

func (d *amqpDriver) dlqDelete(ctx context.Context, topic string) error {
	ch, err := d.control(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDelete(topic, false, false, false)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return nil
	}
	return err
}

// streamOffset is the offset RabbitMQ gives a stream delivery, and false
// for a delivery that has none (not from a stream).
func streamOffset(dl amqp.Delivery) (int64, bool) {
	switch v := dl.Headers["x-stream-offset"].(type) {
	case int64:
		return v, v >= 0
	case int32:
		return int64(v), v >= 0
	}
	return 0, false
}

// dlqMessage is the record of a stream delivery, whatever its writer put
// in it: headers of any type as text, at most maxHeaders of at most
// maxHeaderBytes each; the key likewise; no time when it has no timestamp.
func dlqMessage(off int64, dl amqp.Delivery) topics.Message {
	m := topics.Message{Partition: 0, Offset: off, Value: dl.Body}
	if !dl.Timestamp.IsZero() {
		m.Time = dl.Timestamp
	}
	names := make([]string, 0, len(dl.Headers))
	for k := range dl.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		switch k {
		case "x-stream-offset", wmamqp.DefaultMessageUUIDHeaderKey:
			continue
		}
		v := headerText(dl.Headers[k])
		if len(k)+len(v) > maxHeaderBytes {
			continue
		}
		if k == KeyHeader {
			m.Key = []byte(v)
			continue
		}
		if len(m.Headers) >= maxHeaders || k == "" {
			continue
		}
		m.Headers = append(m.Headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	return m
}

// headerText is an AMQP header value as text, as amqpMarshaler reads it.
func headerText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case nil:
		return ""
	default:
		s := fmt.Sprint(v)
		if len(s) > maxHeaderBytes { // a nested table can print long: cut, still too long to keep
			return s[:maxHeaderBytes+1]
		}
		return s
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d) // Go 1.23+: Reset after Stop leaves no stale tick
}
