package kafkawm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// ErrSubscriberClosed is returned by Subscribe after Close.
var ErrSubscriberClosed = errors.New("kafkawm: subscriber closed")

// Subscriber reads Kafka topics as a member of a consumer group (see the
// package documentation for the delivery rules). Safe for concurrent use.
type Subscriber struct {
	cfg Config
	tc  *topics.Client
	tr  *kafka.Transport
	log *slog.Logger
	// drain is how long a revoked partition waits for the answer (ack or
	// nack) to the message in hand before giving it up uncommitted.
	drain time.Duration

	mu     sync.Mutex
	closed bool
	ctx    context.Context // done at Close
	cancel context.CancelFunc
	subs   sync.WaitGroup
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber returns a subscriber for cfg; cfg.ConsumerGroup is
// required. Nothing connects until the first Subscribe.
func NewSubscriber(cfg Config) (*Subscriber, error) {
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	if cfg.NackResendSleep == 0 {
		cfg.NackResendSleep = DefaultNackResendSleep
	}
	if cfg.Kafka.Logger == nil {
		cfg.Kafka.Logger = slog.Default()
	}
	tr := cfg.transport()
	tc, err := topics.New(topics.Config{
		Brokers: cfg.Kafka.Brokers, Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("kafkawm: %w", err)
	}
	// The coordinator waits RebalanceTimeout for every member to rejoin:
	// a revoked partition waits half of it for its message in hand.
	drain := 35 * time.Second / 2
	if cfg.Kafka.RebalanceTimeout > 0 {
		drain = cfg.Kafka.RebalanceTimeout / 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Subscriber{
		cfg: cfg, tc: tc, tr: tr, drain: drain, ctx: ctx, cancel: cancel,
		log: cfg.Kafka.Logger.With("group", cfg.ConsumerGroup),
	}, nil
}

// SubscribeInitialize creates topic when it is missing, with
// Config.Partitions partitions.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := s.tc.Ensure(ctx, topic, s.cfg.Partitions, nil); err != nil {
		return fmt.Errorf("kafkawm: creating topic %s: %w", topic, err)
	}
	return nil
}

// Subscribe joins the consumer group for topic (creating the topic when it
// is missing) and returns the messages of the partitions assigned to this
// member. The channel is closed once ctx is done or the subscriber is
// closed, after the member has left the group.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := checkTopic(topic); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSubscriberClosed
	}
	s.subs.Add(1)
	s.mu.Unlock()
	if err := s.SubscribeInitialize(topic); err != nil {
		s.subs.Done()
		return nil, err
	}
	start := consumers.FirstOffset
	if s.cfg.StartFromLatest {
		start = consumers.LastOffset
	}
	src, err := consumers.NewKafkaSource(s.cfg.Kafka, []string{topic}, s.cfg.ConsumerGroup, start)
	if err != nil {
		s.subs.Done()
		return nil, fmt.Errorf("kafkawm: %w", err)
	}
	subCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	out := make(chan *message.Message)
	log := s.log.With("topic", topic)
	go func() {
		defer s.subs.Done()
		defer close(out)
		defer stop()
		defer cancel()
		err := src.Consume(subCtx, func(ss consumers.Session) { s.session(subCtx, ss, out, log) }, func(err error) {
			if err != nil {
				log.Debug("consumer group not ready", "err", err)
			}
		})
		if err != nil {
			log.Error("subscription ended", "err", err)
		}
	}()
	return out, nil
}

// Close ends every subscription (their members leave the group) and waits
// for them; the messages in hand are not committed. It may be called more
// than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.subs.Wait()
	s.tr.CloseIdleConnections()
	return nil
}

// session reads every partition of one assignment, one goroutine each, and
// returns once they have all stopped and what was acked is committed.
func (s *Subscriber) session(ctx context.Context, ss consumers.Session, out chan<- *message.Message, log *slog.Logger) {
	c := &committer{ss: ss, log: log, next: map[string]map[int]int64{}, wake: make(chan struct{}, 1)}
	cctx, stop := context.WithCancel(ctx)
	committed := make(chan struct{})
	go func() { defer close(committed); c.run(cctx) }()
	var wg sync.WaitGroup
	for _, a := range ss.Assignments() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.partition(ctx, ss, a, out, c, log.With("partition", a.Partition))
		}()
	}
	wg.Wait()
	stop()
	<-committed
	c.flush(ctx) // what was acked last
}

// committer commits the acked offsets of a session, in the background:
// an ack marks its partition's next offset, and the committer stores the
// latest marks in one request, as soon as the previous one is answered.
// Each partition has one message in hand at a time, so its marks only
// grow: a commit never goes back.
type committer struct {
	ss   consumers.Session
	log  *slog.Logger
	mu   sync.Mutex
	next map[string]map[int]int64 // marked, not yet committed
	wake chan struct{}
}

func (c *committer) mark(m *handlers.Message) {
	c.mu.Lock()
	if c.next[m.Topic] == nil {
		c.next[m.Topic] = map[int]int64{}
	}
	c.next[m.Topic][m.Partition] = m.Offset + 1
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *committer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
			c.flush(ctx)
		}
	}
}

// flush commits the marks. A failed commit is kept for the next one,
// unless the group has fenced this member: then the partitions have
// moved, and their next owners read the uncommitted messages again.
func (c *committer) flush(ctx context.Context) {
	c.mu.Lock()
	marks := c.next
	c.next = map[string]map[int]int64{}
	c.mu.Unlock()
	if len(marks) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := c.ss.Commit(cctx, marks)
	if err == nil {
		return
	}
	if errors.Is(err, consumers.ErrFenced) {
		c.log.Warn("commit refused: the partitions have moved; their next owners read the uncommitted messages again", "err", err)
		return
	}
	c.log.Warn("commit failed; retrying with the next", "err", err)
	c.mu.Lock()
	for t, ps := range marks {
		if c.next[t] == nil {
			c.next[t] = map[int]int64{}
		}
		for p, off := range ps {
			if _, newer := c.next[t][p]; !newer {
				c.next[t][p] = off
			}
		}
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	sleep(ctx, 200*time.Millisecond)
}

func (s *Subscriber) partition(ctx context.Context, ss consumers.Session, a consumers.Assignment, out chan<- *message.Message, c *committer, log *slog.Logger) {
	var rd consumers.PartitionReader
	for backoff := 100 * time.Millisecond; rd == nil; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if rd, err = ss.Reader(a); err != nil {
			log.Warn("opening partition reader failed; retrying", "err", err)
			if !sleep(ss.Context(), backoff) {
				return
			}
		}
	}
	defer rd.Close()
	backoff := 100 * time.Millisecond
	for {
		var m handlers.Message
		if err := rd.Fetch(ss.Context(), &m); err != nil {
			if ss.Context().Err() != nil {
				return
			}
			log.Warn("fetch failed; retrying", "err", err)
			if !sleep(ss.Context(), backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if !s.deliver(ctx, ss, &m, out, c, log) {
			return
		}
	}
}

// deliver sends m until it is acked, and marks it for commit. It returns
// false when the partition stops: the assignment or the subscription ended.
func (s *Subscriber) deliver(ctx context.Context, ss consumers.Session, m *handlers.Message, out chan<- *message.Message, c *committer, log *slog.Logger) bool {
	for {
		wm := toMessage(m)
		mctx, cancel := context.WithCancel(ctx)
		mctx = context.WithValue(mctx, partitionKey, m.Partition)
		mctx = context.WithValue(mctx, offsetKey, m.Offset)
		mctx = context.WithValue(mctx, timestampKey, m.Time)
		wm.SetContext(mctx)
		select {
		case out <- wm:
		case <-ss.Context().Done():
			cancel()
			return false
		}
		select {
		case <-wm.Acked():
			cancel()
			c.mark(m)
			return true
		case <-wm.Nacked():
			cancel()
			if !sleep(ss.Context(), s.cfg.NackResendSleep) {
				return false
			}
			continue
		case <-ss.Context().Done():
		}
		// The partition is being taken away (or the subscription ends):
		// wait a while for the answer to the message in hand, so that a
		// message being handled is committed rather than read again by
		// the next owner.
		t := time.NewTimer(s.drain)
		defer t.Stop()
		select {
		case <-wm.Acked():
			c.mark(m)
		case <-wm.Nacked():
		case <-ctx.Done():
		case <-t.C:
			log.Warn("partition revoked with a message unanswered; its next owner reads it again", "offset", m.Offset)
		}
		cancel()
		return false
	}
}

// toMessage is m as a Watermill message (see the package mapping).
func toMessage(m *handlers.Message) *message.Message {
	var id string
	md := make(message.Metadata, len(m.Headers)+1)
	for _, h := range m.Headers {
		if h.Key == UUIDHeader {
			id = string(h.Value)
			continue
		}
		md[h.Key] = string(h.Value)
	}
	if m.Key != nil {
		md[KeyHeader] = string(m.Key)
	}
	wm := message.NewMessage(id, m.Value)
	wm.Metadata = md
	return wm
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
