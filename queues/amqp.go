package queues

import (
	"context"
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
//
// Mapping: the body is the payload; each header is a header (values that
// are not text are written as Go formats them); the header "key" is the
// key; the header _watermill_message_uuid, or else the message-id
// property, is the Ref.

type amqpDriver struct {
	cfg Config

	mu  sync.Mutex
	pub *wmamqp.Publisher
	ctl *amqp.Connection // ping, backlog
}

func newAMQP(cfg Config) (*amqpDriver, error) { return &amqpDriver{cfg: cfg}, nil }

func (d *amqpDriver) config() wmamqp.Config {
	c := wmamqp.NewDurableQueueConfig(d.cfg.AMQPURL)
	c.Marshaler = amqpMarshaler{}
	c.Publish.ConfirmDelivery = true // Publish returns once the server has it
	c.Publish.ChannelPoolSize = 4
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

func (d *amqpDriver) publisher() (*wmamqp.Publisher, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pub != nil {
		return d.pub, nil
	}
	pub, err := wmamqp.NewPublisher(d.config(), wmLogger(d.cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("rabbitmq at %s: %w", redactURL(d.cfg.AMQPURL), err)
	}
	d.pub = pub
	return pub, nil
}

func (d *amqpDriver) publish(ctx context.Context, topic string, msgs []*message.Message) error {
	// Declare the queue first (as the subscriber does): a publish to the
	// default exchange with no queue of that name is dropped.
	ch, err := d.control(ctx)
	if err != nil {
		return err
	}
	_, err = ch.QueueDeclare(topic, true, false, false, false, nil)
	ch.Close()
	if err != nil {
		return fmt.Errorf("declaring queue %s: %w", topic, err)
	}
	return orAfter(ctx, func() error {
		pub, err := d.publisher()
		if err != nil {
			return err
		}
		return pub.Publish(topic, msgs...)
	})
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
	if d.pub != nil {
		_ = d.pub.Close()
	}
	if d.ctl != nil {
		_ = d.ctl.Close()
	}
	return nil
}

// amqpMarshaler writes what Watermill's default marshaler writes, and
// reads any message (see the mapping above) without failing: the adapter
// nacks with requeue a message it cannot unmarshal, at once and forever.
type amqpMarshaler struct{ wmamqp.DefaultMarshaler }

func (amqpMarshaler) Unmarshal(d amqp.Delivery) (*message.Message, error) {
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
