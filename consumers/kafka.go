package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluicehq/sluice/handlers"
)

// KafkaConfig is how the engine reaches a Kafka cluster. It speaks only the
// Kafka protocol: the same code runs against the embedded broker and a real
// cluster.
type KafkaConfig struct {
	// Brokers are the bootstrap addresses, host:port.
	Brokers []string
	// Dialer connects to brokers; nil uses kafka-go's default dialer. Its
	// TLS and SASLMechanism secure every connection, the group's too.
	Dialer *kafka.Dialer
	// GroupSASL is the Dialer's SASL login in franz-go's form, for the
	// group's kgo clients; nil when the Dialer has none.
	GroupSASL sasl.Mechanism
	// SessionTimeout is how long the coordinator waits for a silent member
	// before giving its partitions to others. Default 10s.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often members check in. Default 1s.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to
	// drain and rejoin during a rebalance. Default 35s; keep it just above
	// the engine's drain timeout plus its final commit, so that a live
	// member always makes it back and a dead one holds the group no longer
	// than necessary.
	RebalanceTimeout time.Duration
	// StallAfter is how long this member waits for the group to form
	// before it leaves and joins afresh. Default 3 x RebalanceTimeout + 2 x
	// SessionTimeout (140s with the other defaults).
	StallAfter time.Duration
	// PartitionWatchInterval is how often the member checks its topics for
	// new partitions. Default 10s.
	PartitionWatchInterval time.Duration
	// ClientID names this node to the brokers; DescribeGroups shows it.
	ClientID string
	// InstanceID, if set, makes this a static member (KIP-345): a restarted
	// node with the same id takes its old place without a rebalance. It
	// must be unique per node.
	InstanceID string
	// MemberData is opaque data this member publishes in the group (the
	// node's identity, for the fleet view).
	MemberData []byte
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

// The defaults of KafkaConfig's tuning, applied by withDefaults.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultFetchMaxBytes     = 1 << 20
	DefaultFetchMaxWait      = 250 * time.Millisecond
	DefaultPrefetchMessages  = 256
)

func (c *KafkaConfig) withDefaults() KafkaConfig {
	out := *c
	if out.SessionTimeout == 0 {
		out.SessionTimeout = DefaultSessionTimeout
	}
	if out.HeartbeatInterval == 0 {
		out.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if out.RebalanceTimeout == 0 {
		out.RebalanceTimeout = 35 * time.Second
	}
	if out.StallAfter == 0 {
		out.StallAfter = 3*out.RebalanceTimeout + 2*out.SessionTimeout
	}
	if out.PartitionWatchInterval == 0 {
		out.PartitionWatchInterval = 10 * time.Second
	}
	if out.FetchMaxBytes == 0 {
		out.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if out.FetchMaxWait == 0 {
		out.FetchMaxWait = DefaultFetchMaxWait
	}
	if out.PrefetchMessages == 0 {
		out.PrefetchMessages = DefaultPrefetchMessages
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

// KafkaSource consumes topics with one consumer group. Membership is
// Sluice's own (group.go), over kafka-go's protocol client; partitions are
// read with kafka-go's partition Reader.
type KafkaSource struct {
	cfg       KafkaConfig
	topics    []string
	group     string
	startFrom int64
	// takeover is the legacy group to start from (TakeOver), or "".
	takeover string
}

// NewKafkaSource returns a source for topics consumed by group. The first
// topic is the handler's own; startFrom (FirstOffset or LastOffset) applies
// to it where the group has no committed offset, and LastOffset is pinned
// (committed) at the first assignment so a later rebalance cannot skip
// messages. The other topics (replay, retry) always start at their first
// offset.
func NewKafkaSource(cfg KafkaConfig, topics []string, group string, startFrom int64, opts ...SourceOption) (*KafkaSource, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka source: no brokers")
	}
	if len(topics) == 0 || group == "" {
		return nil, errors.New("kafka source: topics and group are required")
	}
	if startFrom != FirstOffset && startFrom != LastOffset {
		return nil, fmt.Errorf("kafka source: startFrom must be FirstOffset or LastOffset, got %d", startFrom)
	}
	s := &KafkaSource{cfg: cfg.withDefaults(), topics: topics, group: group, startFrom: startFrom}
	for _, o := range opts {
		o(s)
	}
	if s.takeover == group {
		return nil, fmt.Errorf("kafka source: cannot take over its own group %s", group)
	}
	return s, nil
}

// Consume implements Source. It joins the group, runs session for each
// generation this member is given, and leaves the group when ctx is done,
// after the last session has drained and committed.
func (s *KafkaSource) Consume(ctx context.Context, session func(Session), report func(error)) error {
	if report == nil {
		report = func(error) {}
	}
	log := s.cfg.Logger.With("topic", s.topics[0], "group", s.group)
	m, err := newMember(s.cfg, s.group, s.topics)
	if err != nil {
		return err
	}
	defer m.close()
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); m.heartbeat(hbCtx) }()
	defer func() {
		m.leave()
		stopHB()
		<-hbDone
	}()

	failures := 0
	unformedSince := time.Now()
	stalled := false
	for {
		g, err := m.joinAndSync(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			if failures == 1 || failures%10 == 0 {
				log.Warn("joining consumer group failed; retrying", "err", err, "failures", failures)
			}
			report(err)
			if d := time.Since(unformedSince); d > s.cfg.StallAfter && !stalled {
				// Whatever the coordinator holds of this member is stuck:
				// take it out, and come back as a new member.
				stalled = true
				log.Error("consumer group has not formed; leaving and joining afresh", "unformed_for", d.Round(time.Second))
				m.leave()
			}
			if !sleepCtx(ctx, min(time.Duration(failures)*200*time.Millisecond, 2*time.Second)) {
				return nil
			}
			continue
		}
		if failures > 0 {
			log.Info("joined consumer group", "generation", g.id, "after_failures", failures)
		}
		failures, stalled = 0, false
		report(nil)

		gctx, revoke := context.WithCancel(ctx)
		g.revoke = revoke
		m.setGeneration(g)
		watchDone := make(chan struct{})
		go func() { defer close(watchDone); m.watchPartitions(gctx, g) }()
		ks := &kafkaSession{src: s, m: m, gen: g, ctx: gctx}
		if err := ks.resolve(); err != nil {
			// Without a position nothing is read; rejoin for the next
			// generation.
			log.Warn("resolving start offsets failed; rejoining", "err", err)
			report(err)
			failures++
			if !sleepCtx(ctx, min(time.Duration(failures)*200*time.Millisecond, 2*time.Second)) {
				revoke()
				<-watchDone
				m.setGeneration(nil)
				return nil
			}
		} else {
			session(ks)
		}
		revoke()
		<-watchDone
		m.setGeneration(nil)
		unformedSince = time.Now()
		if g.fenced.Load() {
			log.Warn("generation ended by the coordinator; rejoining", "generation", g.id)
		}
	}
}

type kafkaSession struct {
	src     *KafkaSource
	m       *member
	gen     *generation
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
		ids := append([]int(nil), k.gen.assigned[t]...)
		sort.Ints(ids)
		for _, id := range ids {
			off, ok := k.gen.offsets[t][id]
			if !ok || off < 0 {
				off = k.src.startFrom
				if i > 0 {
					off = FirstOffset
				}
			}
			if i == 0 && k.src.takeover != "" && (!ok || off < 0) {
				off = noOffset // takeOver resolves it
			}
			if off == LastOffset {
				pin = append(pin, kafka.LastOffsetOf(id))
			}
			k.assigns = append(k.assigns, Assignment{Topic: t, Partition: id, Offset: off, Attempts: k.gen.attempts[t][id]})
		}
	}
	if k.src.takeover != "" {
		if err := k.takeOver(); err != nil {
			return err
		}
		for i, a := range k.assigns {
			if a.Offset == noOffset { // the legacy group never committed it
				k.assigns[i].Offset = k.src.startFrom
				if k.src.startFrom == LastOffset {
					pin = append(pin, kafka.LastOffsetOf(a.Partition))
				}
			}
		}
	}
	if len(pin) == 0 {
		return nil
	}
	topic := k.src.topics[0]
	ctx, cancel := context.WithTimeout(k.ctx, 10*time.Second)
	defer cancel()
	resp, err := k.m.ctl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: pin}})
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

// Commit stores offsets for this generation. Once the coordinator has
// rejected the generation it returns ErrFenced without asking again.
func (k *kafkaSession) Commit(ctx context.Context, offsets map[string]map[int]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	return k.m.commit(ctx, k.gen, offsets)
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
