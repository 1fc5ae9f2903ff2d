package queues

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// amqp.go: RabbitMQ through watermill-amqp, with its durable queue
// configuration: a topic is a durable queue of that name, so that a
// publish to the default exchange with the topic as routing key reaches
// it. Every node running a handler consumes the queue (competing
// consumers), one unacknowledged message per subscription (prefetch 1).
// Publishing writes what watermill-amqp's publisher writes, with the
// confirms awaited together (publish).
//
// Mapping: the body is the payload; each header is a header (values that
// are not text are written as Go formats them); the header "key" is the
// key; the header _watermill_message_uuid, or else the message-id
// property, is the Ref.

type amqpDriver struct {
	cfg Config

	mu  sync.Mutex
	ctl *amqp.Connection // publish, ping, backlog
}

func newAMQP(cfg Config) (*amqpDriver, error) { return &amqpDriver{cfg: cfg}, nil }

func (d *amqpDriver) config() wmamqp.Config {
	c := wmamqp.NewDurableQueueConfig(d.cfg.AMQPURL)
	c.Marshaler = amqpMarshaler{}
	c.Connection.Reconnect = &wmamqp.ReconnectConfig{
		BackoffInitialInterval: 500 * time.Millisecond, BackoffMultiplier: 2, BackoffMaxInterval: 5 * time.Second,
	}
	return c
}

func (d *amqpDriver) subscriber(ctx context.Context, topic, _ string, _ int, latest bool) (message.Subscriber, error) {
	if latest {
		return nil, fmt.Errorf("startFrom latest: a RabbitMQ queue has no position to start from")
	}
	var sub *wmamqp.Subscriber
	err := orAfter(ctx, func() error {
		var err error
		sub, err = wmamqp.NewSubscriber(d.config(), wmLogger(d.cfg.Logger))
		if err != nil {
			return fmt.Errorf("rabbitmq at %s: %w", redactURL(d.cfg.AMQPURL), err)
		}
		// Declare the queue now, so that it exists (and collects
		// messages) from the handler's registration on.
		if err := sub.SubscribeInitialize(topic); err != nil {
			sub.Close()
			return fmt.Errorf("declaring queue %s: %w", topic, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sub, nil
}

// publish writes msgs to topic's queue, in order, encoded as
// watermill-amqp's publisher encodes them, and returns once RabbitMQ has
// confirmed them all. The confirms are awaited together: watermill-amqp's
// publisher awaits each before sending the next, a round trip per
// message, while the first ones are already being delivered (and, against
// a failing endpoint, retried and dead-lettered before the breaker has
// seen the others).
func (d *amqpDriver) publish(ctx context.Context, topic string, msgs []*message.Message) error {
	ch, err := d.control(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	// Declare the queue first (as the subscriber does): a publish to the
	// default exchange with no queue of that name is dropped.
	if _, err := ch.QueueDeclare(topic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring queue %s: %w", topic, err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("rabbitmq at %s: confirms: %w", redactURL(d.cfg.AMQPURL), err)
	}
	confs := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		p, err := (amqpMarshaler{}).Marshal(m)
		if err != nil {
			return err
		}
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", topic, false, false, p)
		if err != nil {
			return err
		}
		confs = append(confs, c)
	}
	for i, c := range confs {
		ok, err := c.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("rabbitmq refused message %d of %d (%s)", i+1, len(msgs), msgs[i].UUID)
		}
	}
	return nil
}

func (d *amqpDriver) control(ctx context.Context) (*amqp.Channel, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctl == nil || d.ctl.IsClosed() {
		var conn *amqp.Connection
		err := orAfter(ctx, func() error {
			var err error
			conn, err = amqp.DialConfig(d.cfg.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("rabbitmq at %s: %w", redactURL(d.cfg.AMQPURL), err)
		}
		d.ctl = conn
	}
	return d.ctl.Channel()
}

func (d *amqpDriver) ping(ctx context.Context) error {
	ch, err := d.control(ctx)
	if err != nil {
		return err
	}
	return ch.Close()
}

// backlog is the queue's ready count; RabbitMQ does not say, through
// AMQP, how many are delivered and unacknowledged.
func (d *amqpDriver) backlog(ctx context.Context, topic, _ string) (Backlog, error) {
	ch, err := d.control(ctx)
	if err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(topic, true, false, false, false, nil)
	if err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	return Backlog{Waiting: int64(q.Messages), Unacked: -1}, nil
}

func (d *amqpDriver) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctl != nil {
		_ = d.ctl.Close()
	}
	return nil
}

var errClosedDeliveries = errors.New("the channel's deliveries are closed")

// amqpMarshaler writes what Watermill's default marshaler writes, and
// reads any message (see the mapping above) without failing: the adapter
// nacks with requeue a message it cannot unmarshal, at once and forever.
type amqpMarshaler struct{ wmamqp.DefaultMarshaler }

// A delivery with no acknowledger is not a message: watermill-amqp reads
// the deliveries channel without checking that it is open, so once the
// server closes the channel (a missed heartbeat on a loaded machine, a
// connection lost) it receives zero deliveries until it notices the close.
// Each would reach the handler as an empty message. The error makes the
// adapter's nack of it fail, and the adapter then opens a new channel.
func (amqpMarshaler) Unmarshal(d amqp.Delivery) (*message.Message, error) {
	if d.Acknowledger == nil {
		return nil, errClosedDeliveries
	}
	id := d.MessageId
	if v, ok := d.Headers[wmamqp.DefaultMessageUUIDHeaderKey].(string); ok && v != "" {
		id = v
	}
	wm := message.NewMessage(id, d.Body)
	for k, v := range d.Headers {
		if k == wmamqp.DefaultMessageUUIDHeaderKey {
			continue
		}
		switch v := v.(type) {
		case string:
			wm.Metadata.Set(k, v)
		case []byte:
			wm.Metadata.Set(k, string(v))
		default:
			wm.Metadata.Set(k, fmt.Sprint(v))
		}
	}
	return wm, nil
}
