package queues

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// nats.go: NATS JetStream through watermill-nats (its pkg/nats JetStream
// mode). A topic is a subject; Sluice finds the stream that captures it,
// or creates one (named for the subject, dots as underscores). A handler
// reads it with the durable consumer sluice_<name> and the queue group of
// the same name, so the nodes running it share the messages.
//
// Mapping: the data is the payload; each header is a header (its first
// value); the header "key" is the key; _watermill_message_uuid, or else
// Nats-Msg-Id, is the Ref.

type natsDriver struct {
	cfg Config
	mu  sync.Mutex // guards the fields below
	nc  *nats.Conn // publish, ping, backlog
	js  nats.JetStreamContext
	pub *wmnats.Publisher
}

func natsOptions(name string) []nats.Option {
	return []nats.Option{nats.Name(name), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
}

func newNATS(cfg Config) (*natsDriver, error) {
	// The connection is opened on first use, so that a node starts
	// whether or not a NATS server runs.
	return &natsDriver{cfg: cfg}, nil
}

func (d *natsDriver) conn() (*nats.Conn, nats.JetStreamContext, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nc != nil && !d.nc.IsClosed() {
		return d.nc, d.js, nil
	}
	nc, err := nats.Connect(d.cfg.NATSURL, natsOptions(d.cfg.Node)...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats at %s: %w", d.cfg.NATSURL, err)
	}
	js, err := nc.JetStream()
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("nats at %s: jetstream: %w", d.cfg.NATSURL, err)
	}
	pub, err := wmnats.NewPublisherWithNatsConn(nc, wmnats.PublisherPublishConfig{
		Marshaler:         &wmnats.NATSMarshaler{},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		JetStream:         wmnats.JetStreamConfig{TrackMsgId: true},
	}, wmLogger(d.cfg.Logger))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	d.nc, d.js, d.pub = nc, js, pub
	return nc, js, nil
}

// durableName is a JetStream name for s: no dots, spaces, * or >.
func durableName(s string) string {
	return strings.NewReplacer(".", "_", " ", "_", "*", "_", ">", "_").Replace(s)
}

// ensureStream returns the stream that captures subject, creating one
// named for it when there is none.
func ensureStream(js nats.JetStreamContext, subject string) (string, error) {
	name, err := js.StreamNameBySubject(subject)
	if err == nil {
		return name, nil
	}
	if !errors.Is(err, nats.ErrStreamNotFound) && !errors.Is(err, nats.ErrNoMatchingStream) {
		return "", fmt.Errorf("finding the stream of %s: %w", subject, err)
	}
	name = durableName(subject)
	if _, err := js.AddStream(&nats.StreamConfig{Name: name, Subjects: []string{subject}, Storage: nats.FileStorage}); err != nil {
		if !errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
			return "", fmt.Errorf("creating stream %s for %s: %w", name, subject, err)
		}
	}
	return name, nil
}

// ensureConsumer creates the durable push consumer of a handler's group
// unless it exists, with the configuration the subscription asks for, and
// reports whether it existed. Sluice creates it rather than nats.go:
// nats.go deletes a consumer it created when that subscription ends, so
// the first node to stop (or to drain an assignment) would delete the
// durable from under the others, and with it the group's progress (found
// by Watermill's suite, TestConcurrentClose: "nats: consumer not found").
// An existing durable keeps its position (as a Kafka group keeps its
// offsets, whatever startFrom says); its ack wait and max ack pending are
// brought to the handler's current ones.
func ensureConsumer(js nats.JetStreamContext, nc *nats.Conn, stream, subject, durable string, policy nats.DeliverPolicy, ackWait time.Duration, maxAckPending int) (bool, error) {
	info, err := js.ConsumerInfo(stream, durable)
	if err == nil {
		if info.Config.AckWait != ackWait || info.Config.MaxAckPending != maxAckPending {
			cfg := info.Config
			cfg.AckWait, cfg.MaxAckPending = ackWait, maxAckPending
			if _, err := js.UpdateConsumer(stream, &cfg); err != nil {
				return true, fmt.Errorf("updating consumer %s of stream %s: %w", durable, stream, err)
			}
		}
		return true, nil
	}
	if !errors.Is(err, nats.ErrConsumerNotFound) {
		return false, fmt.Errorf("reading consumer %s of stream %s: %w", durable, stream, err)
	}
	_, err = js.AddConsumer(stream, &nats.ConsumerConfig{
		Durable:        durable,
		DeliverSubject: nc.NewInbox(),
		DeliverGroup:   durable,
		DeliverPolicy:  policy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxAckPending:  maxAckPending,
		FilterSubject:  subject,
		ReplayPolicy:   nats.ReplayInstantPolicy,
	})
	if err != nil {
		// Another node may have created it meanwhile.
		if _, ierr := js.ConsumerInfo(stream, durable); ierr == nil {
			return true, nil
		}
		return false, fmt.Errorf("creating consumer %s of stream %s: %w", durable, stream, err)
	}
	return false, nil
}

func (d *natsDriver) subscriber(ctx context.Context, topic, group string, subs int, latest bool) (message.Subscriber, error) {
	nc, err := nats.Connect(d.cfg.NATSURL, natsOptions(d.cfg.Node)...)
	if err != nil {
		return nil, fmt.Errorf("nats at %s: %w", d.cfg.NATSURL, err)
	}
	js, err := nc.JetStream()
	durable := durableName(group)
	policy := nats.DeliverAllPolicy
	if latest {
		policy = nats.DeliverNewPolicy
	}
	existed := false
	if err == nil {
		err = orAfter(ctx, func() error {
			stream, err := ensureStream(js, topic)
			if err != nil {
				return err
			}
			existed, err = ensureConsumer(js, nc, stream, topic, durable, policy, d.cfg.RedeliverAfter, subs)
			return err
		})
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	opts := []nats.SubOpt{
		nats.ManualAck(), nats.AckExplicit(), nats.AckWait(d.cfg.RedeliverAfter),
		// The server sends no more than a node holds: a message
		// waiting in the client's buffer while the breaker pauses
		// would pass its ack wait and come again. The bound is the
		// durable's, so it is shared by the nodes of the handler.
		nats.MaxAckPending(subs),
	}
	if !existed {
		// An existing durable keeps its position: asking for another
		// start would fail the subscription.
		if latest {
			opts = append(opts, nats.DeliverNew())
		} else {
			opts = append(opts, nats.DeliverAll())
		}
	}
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:       natsUnmarshaler{},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		QueueGroupPrefix:  durable,
		SubscribersCount:  subs,
		// The adapter forgets a message it has waited this long for; the
		// server gives it to another consumer after the same time.
		AckWaitTimeout: d.cfg.RedeliverAfter,
		CloseTimeout:   5 * time.Second,
		JetStream: wmnats.JetStreamConfig{
			DurablePrefix:     durable,
			DurableCalculator: func(prefix, _ string) string { return prefix },
			SubscribeOptions:  opts,
		},
	}, wmLogger(d.cfg.Logger))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsSubscriber{Subscriber: sub, nc: nc}, nil
}

// natsSubscriber is watermill-nats's subscriber, quiesced before it is
// closed (consumers.Quiescer).
type natsSubscriber struct {
	*wmnats.Subscriber
	nc *nats.Conn
}

// Quiesce drains the connection: the subscriptions stop (the durable
// consumer stays), the messages already received go through the
// callbacks (which the source gives back), and the connection closes once
// they have returned.
func (s *natsSubscriber) Quiesce(ctx context.Context) error {
	if err := s.nc.Drain(); err != nil {
		return err
	}
	for !s.nc.IsClosed() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func (d *natsDriver) publish(ctx context.Context, topic string, msgs []*message.Message) error {
	_, js, err := d.conn()
	if err != nil {
		return err
	}
	d.mu.Lock()
	pub := d.pub
	d.mu.Unlock()
	return orAfter(ctx, func() error {
		if _, err := ensureStream(js, topic); err != nil {
			return err
		}
		return pub.Publish(topic, msgs...)
	})
}

func (d *natsDriver) ping(ctx context.Context) error {
	nc, _, err := d.conn()
	if err != nil {
		return err
	}
	if !nc.IsConnected() {
		return fmt.Errorf("nats at %s: %s", d.cfg.NATSURL, strings.ToLower(nc.Status().String()))
	}
	return nc.FlushWithContext(ctx)
}

// backlog is the durable consumer's NumPending (not yet delivered) and
// NumAckPending (delivered, not acknowledged).
func (d *natsDriver) backlog(ctx context.Context, topic, group string) (Backlog, error) {
	_, js, err := d.conn()
	if err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	stream, err := js.StreamNameBySubject(topic, nats.Context(ctx))
	if err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	ci, err := js.ConsumerInfo(stream, durableName(group), nats.Context(ctx))
	if err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	b := Backlog{Waiting: int64(ci.NumPending), Unacked: int64(ci.NumAckPending)}
	if b.Waiting+b.Unacked > 0 {
		// The message after the ack floor is the oldest not finished,
		// when it is the subject's (a stream Sluice made holds only it).
		if m, err := js.GetMsg(stream, ci.AckFloor.Stream+1, nats.Context(ctx)); err == nil && m.Subject == topic {
			b.Oldest = m.Time
		}
	}
	return b, nil
}

func (d *natsDriver) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nc != nil {
		d.nc.Close()
	}
	return nil
}

// natsUnmarshaler reads any message (see the mapping above). It never
// fails: the adapter drops a message it cannot unmarshal without a nack,
// and JetStream would then deliver it again after every ack wait.
type natsUnmarshaler struct{}

func (natsUnmarshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	id := m.Header.Get(wmnats.WatermillUUIDHdr)
	if id == "" {
		id = m.Header.Get(nats.MsgIdHdr)
	}
	wm := message.NewMessage(id, m.Data)
	for k, vs := range m.Header {
		switch k {
		case wmnats.WatermillUUIDHdr, nats.MsgIdHdr, nats.ExpectedLastMsgIdHdr, nats.ExpectedStreamHdr, nats.ExpectedLastSubjSeqHdr, nats.ExpectedLastSeqHdr:
			continue
		}
		if len(vs) > 0 {
			wm.Metadata.Set(k, vs[0])
		}
	}
	return wm, nil
}
