package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/handlers"
)

// KafkaConfig is how the engine reaches a Kafka cluster. It speaks only the
// Kafka protocol: the same code runs against the embedded broker and a real
// cluster.
type KafkaConfig struct {
	// Brokers are the bootstrap addresses, host:port.
	Brokers []string
	// Dialer connects to brokers; nil uses kafka-go's default dialer.
	Dialer *kafka.Dialer
	// SessionTimeout is how long the coordinator waits for a silent member
	// before giving its partitions to others. Default 10s.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often members check in. Default 1s.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to
	// drain and rejoin during a rebalance. Default 60s; keep it above the
	// engine's drain timeout.
	RebalanceTimeout time.Duration
	// FetchMaxBytes bounds one fetch from a partition. Default 1 MiB.
	FetchMaxBytes int
	// FetchMaxWait is the longest a fetch waits for new data. Default 250ms.
	FetchMaxWait time.Duration
	// PrefetchMessages is how many messages each partition reader buffers
	// ahead of the engine. Default 256.
	PrefetchMessages int
	// Logger receives the source's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *KafkaConfig) withDefaults() KafkaConfig {
	out := *c
	if out.SessionTimeout == 0 {
		out.SessionTimeout = 10 * time.Second
	}
	if out.HeartbeatInterval == 0 {
		out.HeartbeatInterval = time.Second
	}
	if out.RebalanceTimeout == 0 {
		out.RebalanceTimeout = 60 * time.Second
	}
	if out.FetchMaxBytes == 0 {
		out.FetchMaxBytes = 1 << 20
	}
	if out.FetchMaxWait == 0 {
		out.FetchMaxWait = 250 * time.Millisecond
	}
	if out.PrefetchMessages == 0 {
		out.PrefetchMessages = 256
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

// KafkaSource consumes topics with one consumer group through kafka-go's
// ConsumerGroup, whose Generation exposes each assignment's lifecycle.
type KafkaSource struct {
	cfg       KafkaConfig
	topics    []string
	group     string
	startFrom int64
	onError   func(error)
	client    *kafka.Client
}

// NewKafkaSource returns a source for topics consumed by group. The first
// topic is the handler's own; startFrom (FirstOffset or LastOffset) applies
// to it where the group has no committed offset, and LastOffset is pinned
// (committed) at the first assignment so a later rebalance cannot skip
// messages. The other topics (replay, retry) always start at their first
// offset. onError, if not nil, is told of each transient error and of
// recovery (nil).
func NewKafkaSource(cfg KafkaConfig, topics []string, group string, startFrom int64, onError func(error)) (*KafkaSource, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka source: no brokers")
	}
	if len(topics) == 0 || group == "" {
		return nil, errors.New("kafka source: topics and group are required")
	}
	if startFrom != FirstOffset && startFrom != LastOffset {
		return nil, fmt.Errorf("kafka source: startFrom must be FirstOffset or LastOffset, got %d", startFrom)
	}
	if onError == nil {
		onError = func(error) {}
	}
	cfg = cfg.withDefaults()
	var tr kafka.RoundTripper = kafka.DefaultTransport
	if cfg.Dialer != nil {
		tr = &kafka.Transport{Dial: cfg.Dialer.DialFunc, ClientID: cfg.Dialer.ClientID}
	}
	return &KafkaSource{
		cfg: cfg, topics: topics, group: group, startFrom: startFrom, onError: onError,
		client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: 10 * time.Second},
	}, nil
}

// Consume implements Source.
func (s *KafkaSource) Consume(ctx context.Context, session func(Session)) error {
	log := s.cfg.Logger.With("topic", s.topics[0], "group", s.group)
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                s.group,
		Brokers:           s.cfg.Brokers,
		Dialer:            s.cfg.Dialer,
		Topics:            s.topics,
		GroupBalancers:    []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
		HeartbeatInterval: s.cfg.HeartbeatInterval,
		SessionTimeout:    s.cfg.SessionTimeout,
		RebalanceTimeout:  s.cfg.RebalanceTimeout,
		JoinGroupBackoff:  time.Second,
		StartOffset:       s.startFrom,
		// Partition growth ends the generation, so new partitions are
		// picked up without a restart.
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 10 * time.Second,
		Timeout:                10 * time.Second,
		Logger:                 nil,
		ErrorLogger:            nil,
	})
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", s.group, err)
	}
	// Close ends the running generation (its session drains and commits
	// first) and leaves the group.
	defer cg.Close()
	failures := 0
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			failures++
			if failures == 1 || failures%10 == 0 {
				log.Warn("joining consumer group failed; retrying", "err", err, "failures", failures)
			}
			s.onError(fmt.Errorf("joining group %s: %w", s.group, err))
			continue
		}
		if failures > 0 {
			log.Info("joined consumer group", "generation", gen.ID, "after_failures", failures)
		}
		failures = 0
		s.onError(nil)
		gen.Start(func(gctx context.Context) {
			ks := &kafkaSession{src: s, gen: gen, ctx: gctx}
			if err := ks.resolve(); err != nil {
				// Without a position nothing is read; end the generation
				// and try again with the next one.
				log.Warn("resolving start offsets failed; rejoining", "err", err)
				s.onError(err)
				return
			}
			session(ks)
		})
	}
}

type kafkaSession struct {
	src     *KafkaSource
	gen     *kafka.Generation
	ctx     context.Context
	assigns []Assignment
}

// resolve turns the sentinel positions of partitions without a committed
// offset into real ones. The handler's topic with startFrom latest is
// pinned to its current end and committed, so that "latest" means "from
// when the handler first consumed", not "from whenever a rebalance happens".
func (k *kafkaSession) resolve() error {
	var pin []kafka.OffsetRequest
	for i, t := range k.src.topics {
		for _, a := range k.gen.Assignments[t] {
			off := a.Offset
			if off < 0 && i > 0 {
				off = FirstOffset
			}
			if off == LastOffset {
				pin = append(pin, kafka.LastOffsetOf(a.ID))
			}
			k.assigns = append(k.assigns, Assignment{Topic: t, Partition: a.ID, Offset: off})
		}
	}
	if len(pin) == 0 {
		return nil
	}
	topic := k.src.topics[0]
	ctx, cancel := context.WithTimeout(k.ctx, 10*time.Second)
	defer cancel()
	resp, err := k.src.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: pin}})
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	ends := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return fmt.Errorf("listing end offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		ends[po.Partition] = po.LastOffset
	}
	for i, a := range k.assigns {
		if a.Topic == topic && a.Offset == LastOffset {
			end, ok := ends[a.Partition]
			if !ok {
				return fmt.Errorf("no end offset for %s/%d", topic, a.Partition)
			}
			k.assigns[i].Offset = end
		}
	}
	if err := k.Commit(ctx, map[string]map[int]int64{topic: ends}); err != nil {
		return err
	}
	return nil
}

func (k *kafkaSession) Context() context.Context { return k.ctx }

func (k *kafkaSession) Assignments() []Assignment { return k.assigns }

func (k *kafkaSession) Reader(a Assignment) (PartitionReader, error) {
	cfg := kafka.ReaderConfig{
		Brokers:       k.src.cfg.Brokers,
		Dialer:        k.src.cfg.Dialer,
		Topic:         a.Topic,
		Partition:     a.Partition,
		MinBytes:      1,
		MaxBytes:      k.src.cfg.FetchMaxBytes,
		MaxWait:       k.src.cfg.FetchMaxWait,
		QueueCapacity: k.src.cfg.PrefetchMessages,
		MaxAttempts:   3,
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("reader for %s/%d: %w", a.Topic, a.Partition, err)
	}
	r := kafka.NewReader(cfg)
	if err := r.SetOffset(a.Offset); err != nil {
		r.Close()
		return nil, fmt.Errorf("reader for %s/%d at %d: %w", a.Topic, a.Partition, a.Offset, err)
	}
	return &kafkaReader{r: r}, nil
}

func (k *kafkaSession) Commit(ctx context.Context, offsets map[string]map[int]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- k.gen.CommitOffsets(offsets) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("committing offsets for group %s: %w", k.src.group, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("committing offsets for group %s: %w", k.src.group, ctx.Err())
	}
}

type kafkaReader struct{ r *kafka.Reader }

func (k *kafkaReader) Fetch(ctx context.Context, m *handlers.Message) error {
	km, err := k.r.FetchMessage(ctx)
	if err != nil {
		return err
	}
	m.Topic = km.Topic
	m.Partition = km.Partition
	m.Offset = km.Offset
	m.Key = km.Key
	m.Value = km.Value
	m.Time = km.Time
	if len(km.Headers) > 0 {
		m.Headers = make([]handlers.Header, len(km.Headers))
		for i, h := range km.Headers {
			m.Headers[i] = handlers.Header{Key: h.Key, Value: h.Value}
		}
	}
	return nil
}

func (k *kafkaReader) Close() error { return k.r.Close() }
