package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/handlers"
)

// watermill.go: a queue that acknowledges each message (NATS JetStream,
// RabbitMQ, Redis Streams, PostgreSQL), read through a Watermill
// Subscriber, as a Source.
//
// Invariant: every message received from the subscriber is acknowledged
// at most once and only after the engine settled it final (handled, or
// durably dead-lettered); every other message is nacked, or left
// unacknowledged for the queue to deliver again, so nothing is lost.
//
// Such a queue has no partitions and no offsets. The source gives the
// engine one assignment of one partition (0) for as long as it consumes,
// and numbers the messages it hands over (0, 1, 2, ...) so the engine can
// track them; those numbers mean nothing to the queue and restart with
// every assignment. Commit does nothing: the engine's Settle is the commit,
// one message at a time.

// WatermillConfig is how a WatermillSource reads one queue.
type WatermillConfig struct {
	// Kind names the queue in logs and errors ("redis", "nats").
	Kind string
	// Topic is what is consumed: the stream subject, queue, stream key or
	// table topic.
	Topic string
	// Open connects to the server and returns a subscriber, having
	// provisioned what is missing (stream, group, queue, tables). It is
	// called at the start of every assignment; the source closes what it
	// returns.
	Open func(ctx context.Context) (message.Subscriber, error)
	// Subscriptions is how many subscriptions of Topic feed the engine.
	// Watermill's adapters hold one unacknowledged message per
	// subscription, so this bounds the messages in hand: set it to the
	// handler's concurrency. Default 1.
	Subscriptions int
	// Decode fills m (Value, Key, Headers, Time, Ref) from a received
	// message. It must accept anything: a queue's records are written by
	// any client.
	Decode func(wm *message.Message, m *handlers.Message)
	// Check, if set, is asked every CheckInterval whether the server
	// answers; while it fails, the handler's state is error with its
	// reason, and the messages in hand are kept.
	Check func(ctx context.Context) error
	// CheckInterval is how often Check runs. Default 2s.
	CheckInterval time.Duration
	// Logger receives the source's logs. Default slog.Default().
	Logger *slog.Logger
}

// Quiescer is implemented by a subscriber (returned by WatermillConfig's
// Open) that must stop its deliveries, and see its handlers of received
// messages return, before its context is cancelled and it is closed.
// watermill-nats is one: it closes its output channel once its
// subscriptions are cancelled, while nats.go may still be running a
// message's callback that sends to it (a send on a closed channel).
type Quiescer interface {
	Quiesce(ctx context.Context) error
}

// WatermillSource consumes one queue through a Watermill Subscriber.
type WatermillSource struct{ cfg WatermillConfig }

// NewWatermillSource returns a source for cfg.
func NewWatermillSource(cfg WatermillConfig) (*WatermillSource, error) {
	if cfg.Open == nil || cfg.Decode == nil || cfg.Topic == "" {
		return nil, errors.New("watermill source: Topic, Open and Decode are required")
	}
	if cfg.Subscriptions <= 0 {
		cfg.Subscriptions = 1
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &WatermillSource{cfg: cfg}, nil
}

// Consume implements Source: it subscribes, runs one session until ctx is
// done, then nacks what the engine did not settle and closes the
// subscriber. It returns an error when the server cannot be reached or the
// subscriptions end on their own; the runner then starts it again.
func (s *WatermillSource) Consume(ctx context.Context, session func(Session), report func(error)) error {
	if report == nil {
		report = func(error) {}
	}
	log := s.cfg.Logger.With("source", s.cfg.Kind, "topic", s.cfg.Topic)
	openCtx, cancelOpen := context.WithTimeout(ctx, 15*time.Second)
	sub, err := s.cfg.Open(openCtx)
	cancelOpen()
	if err != nil {
		return fmt.Errorf("%s source %s: %w", s.cfg.Kind, s.cfg.Topic, err)
	}
	// The subscriptions outlive the session's context: the drain acks
	// through them after the assignment is over.
	subCtx, stopSubs := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stopSubs()
		if err := sub.Close(); err != nil {
			log.Warn("closing subscriber failed", "err", err)
		}
	}()
	sessCtx, endSession := context.WithCancelCause(ctx)
	defer endSession(nil)
	in := make(chan *message.Message)
	// over is closed once the session is over: what still arrives is
	// given back at once.
	over := make(chan struct{})
	var feeding sync.WaitGroup
	for i := 0; i < s.cfg.Subscriptions; i++ {
		out, err := sub.Subscribe(subCtx, s.cfg.Topic)
		if err != nil {
			return fmt.Errorf("%s source: subscribing to %s: %w", s.cfg.Kind, s.cfg.Topic, err)
		}
		feeding.Add(1)
		go func() {
			defer feeding.Done()
			for wm := range out {
				select {
				case in <- wm:
				case <-over:
					wm.Nack()
				case <-subCtx.Done():
					wm.Nack()
				}
			}
		}()
	}
	go func() {
		feeding.Wait()
		if subCtx.Err() == nil {
			endSession(fmt.Errorf("%s source: the subscriptions of %s ended", s.cfg.Kind, s.cfg.Topic))
		}
	}()
	if s.cfg.Check != nil {
		go s.watch(sessCtx, report, log)
	}
	rd := &watermillReader{src: s, in: in, held: make(map[int64]*message.Message)}
	session(&watermillSession{ctx: sessCtx, topic: s.cfg.Topic, rd: rd})
	if n := rd.nackAll(); n > 0 {
		log.Info("gave back unfinished messages", "count", n)
	}
	close(over)
	if q, ok := sub.(Quiescer); ok {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := q.Quiesce(qctx); err != nil {
			log.Warn("stopping the subscriber's deliveries failed", "err", err)
		}
		cancel()
	}
	if cause := context.Cause(sessCtx); ctx.Err() == nil && cause != nil {
		return cause
	}
	return nil
}

// watch reports the server's health while a session runs.
func (s *WatermillSource) watch(ctx context.Context, report func(error), log *slog.Logger) {
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckInterval)
		err := s.cfg.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			if !failing {
				log.Warn("queue server not answering; holding the messages in hand", "err", err)
			}
			failing = true
			report(fmt.Errorf("%s server for %s: %w", s.cfg.Kind, s.cfg.Topic, err))
		case failing:
			failing = false
			log.Info("queue server answers again")
			report(nil)
		}
	}
}

type watermillSession struct {
	ctx   context.Context
	topic string
	rd    *watermillReader
}

func (w *watermillSession) Context() context.Context { return w.ctx }

func (w *watermillSession) Assignments() []Assignment {
	return []Assignment{{Topic: w.topic, Partition: 0, Offset: 0}}
}

func (w *watermillSession) Reader(Assignment) (PartitionReader, error) { return w.rd, nil }

// Commit does nothing: each message is acknowledged when it is settled.
func (w *watermillSession) Commit(context.Context, map[string]map[int]int64) error { return nil }

// watermillReader hands over received messages, numbered, and settles them.
type watermillReader struct {
	src *WatermillSource
	in  <-chan *message.Message

	mu   sync.Mutex
	next int64
	held map[int64]*message.Message // received, not yet settled
	done bool
}

func (r *watermillReader) Fetch(ctx context.Context, m *handlers.Message) error {
	var wm *message.Message
	select {
	case wm = <-r.in:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		wm.Nack()
		return errors.New("watermill source: reader closed")
	}
	off := r.next
	r.next++
	r.held[off] = wm
	r.mu.Unlock()
	*m = handlers.Message{Topic: r.src.cfg.Topic, Offset: off}
	r.src.cfg.Decode(wm, m)
	m.Topic, m.Partition, m.Offset = r.src.cfg.Topic, 0, off
	return nil
}

// Settle implements Settler.
func (r *watermillReader) Settle(offset int64, final bool) {
	r.mu.Lock()
	wm, ok := r.held[offset]
	delete(r.held, offset)
	r.mu.Unlock()
	if !ok {
		return // given back already, when the session ended
	}
	if final {
		wm.Ack()
	} else {
		wm.Nack()
	}
}

// Close does nothing: in-flight messages are still settled by the drain;
// what is left when the session ends is given back by nackAll.
func (r *watermillReader) Close() error { return nil }

// nackAll gives back every message not settled (fetched but never started,
// or still running past the drain) and refuses further fetches.
func (r *watermillReader) nackAll() int {
	r.mu.Lock()
	held := r.held
	r.held, r.done = map[int64]*message.Message{}, true
	r.mu.Unlock()
	for _, wm := range held {
		wm.Nack()
	}
	return len(held)
}
