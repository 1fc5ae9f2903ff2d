// Package topics is Sluice's admin and produce path to Kafka: creating and
// listing topics, end offsets, and producing messages with acks from all
// in-sync replicas while reporting the partition and offset of each. It
// speaks plain Kafka through kafka-go and works the same against the
// embedded broker and a real cluster.
package topics

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/handlers"
)

// ErrTopicExists is returned by Create for a topic that already exists.
var ErrTopicExists = errors.New("topic already exists")

// ErrUnknownTopic is returned for a topic that does not exist where it must.
var ErrUnknownTopic = errors.New("unknown topic")

// ErrNoPartition is returned for a record aimed at a partition the topic
// does not have.
var ErrNoPartition = errors.New("no such partition")

// Config configures a Client.
type Config struct {
	Brokers []string
	// Partitions of topics created on first use. Default 12.
	Partitions int
	// ReplicationFactor of created topics; -1 (default) is the broker's.
	ReplicationFactor int
	// Transport carries requests; nil uses a new kafka.Transport.
	Transport *kafka.Transport
}

// Client talks to the cluster. Safe for concurrent use.
type Client struct {
	kc  *kafka.Client
	cfg Config

	mu    sync.Mutex
	parts map[string]partitionCount
}

type partitionCount struct {
	n    int
	seen time.Time
}

// New returns a client for cfg.Brokers.
// DefaultPartitions is the partition count of topics created on first use,
// unless configured.
const DefaultPartitions = 12

func New(cfg Config) (*Client, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("topics: no brokers")
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = -1
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &kafka.Transport{DialTimeout: 5 * time.Second, IdleTimeout: time.Minute, MetadataTTL: 10 * time.Second}
	}
	return &Client{
		kc:    &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: 15 * time.Second},
		cfg:   cfg,
		parts: make(map[string]partitionCount),
	}, nil
}

// Create creates topic with partitions (0 means the default) and configs.
// It returns ErrTopicExists when the topic is already there.
func (c *Client) Create(ctx context.Context, topic string, partitions int, configs map[string]string) error {
	if partitions <= 0 {
		partitions = c.cfg.Partitions
	}
	tc := kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: c.cfg.ReplicationFactor}
	for k, v := range configs {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	resp, err := c.kc.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil {
		if errors.Is(err, kafka.TopicAlreadyExists) {
			return ErrTopicExists
		}
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

// Ensure creates topic unless it exists already.
func (c *Client) Ensure(ctx context.Context, topic string, partitions int, configs map[string]string) error {
	if n, err := c.Partitions(ctx, topic); err == nil && n > 0 {
		return nil
	} else if err != nil && !errors.Is(err, ErrUnknownTopic) {
		return err
	}
	if err := c.Create(ctx, topic, partitions, configs); err != nil && !errors.Is(err, ErrTopicExists) {
		return err
	}
	c.forget(topic)
	return nil
}

func (c *Client) forget(topic string) {
	c.mu.Lock()
	delete(c.parts, topic)
	c.mu.Unlock()
}

// Partitions returns how many partitions topic has, or ErrUnknownTopic.
func (c *Client) Partitions(ctx context.Context, topic string) (int, error) {
	c.mu.Lock()
	pc, ok := c.parts[topic]
	c.mu.Unlock()
	if ok && time.Since(pc.seen) < 10*time.Second {
		return pc.n, nil
	}
	md, err := c.kc.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("reading metadata of %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				return 0, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
			}
			return 0, fmt.Errorf("reading metadata of %s: %w", topic, t.Error)
		}
		n := len(t.Partitions)
		c.mu.Lock()
		c.parts[topic] = partitionCount{n: n, seen: time.Now()}
		c.mu.Unlock()
		return n, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
}

// Info describes one topic.
type Info struct {
	Name       string  `json:"name"`
	Partitions int     `json:"partitions"`
	EndOffsets []int64 `json:"endOffsets,omitempty"`
	Messages   int64   `json:"messages"`
	Internal   bool    `json:"internal,omitempty"`
}

// List returns every topic with its partitions and end offsets, sorted by
// name.
func (c *Client) List(ctx context.Context) ([]Info, error) {
	md, err := c.kc.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	out := make([]Info, 0, len(md.Topics))
	for _, t := range md.Topics {
		if t.Error != nil {
			continue
		}
		info := Info{Name: t.Name, Partitions: len(t.Partitions), Internal: t.Internal || len(t.Name) > 1 && t.Name[:2] == "__"}
		ends, err := c.Offsets(ctx, t.Name, len(t.Partitions))
		if err == nil {
			info.EndOffsets = make([]int64, len(t.Partitions))
			for p, o := range ends {
				if p < len(info.EndOffsets) {
					info.EndOffsets[p] = o.End
					info.Messages += o.End - o.Start
				}
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Range is the first and the next offset of a partition.
type Range struct{ Start, End int64 }

// Offsets returns each partition's first retained and end (next) offset.
func (c *Client) Offsets(ctx context.Context, topic string, partitions int) (map[int]Range, error) {
	req := make([]kafka.OffsetRequest, 0, 2*partitions)
	for p := 0; p < partitions; p++ {
		req = append(req, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	resp, err := c.kc.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	out := make(map[int]Range, partitions)
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("listing offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = Range{Start: po.FirstOffset, End: po.LastOffset}
	}
	return out, nil
}

// CommittedOffsets returns group's committed offsets on topic; a partition
// without one is absent.
func (c *Client) CommittedOffsets(ctx context.Context, group, topic string, partitions int) (map[int]int64, error) {
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	resp, err := c.kc.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", group, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", group, resp.Error)
	}
	out := make(map[int]int64, partitions)
	for _, p := range resp.Topics[topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// Forward builds a record that carries key and value (an empty value, never
// nil, for a nil one) onward: the headers of hs that keep accepts, then
// extra.
func Forward(key, value []byte, hs []kafka.Header, keep func(key string) bool, extra ...kafka.Header) Record {
	out := make([]kafka.Header, 0, len(hs)+len(extra))
	for _, h := range hs {
		if keep(h.Key) {
			out = append(out, h)
		}
	}
	out = append(out, extra...)
	if value == nil {
		value = []byte{}
	}
	return Record{Key: key, Value: value, Headers: out, Partition: -1}
}

// KafkaHeaders converts a message's headers for producing.
func KafkaHeaders(hs []handlers.Header) []kafka.Header {
	out := make([]kafka.Header, len(hs))
	for i, h := range hs {
		out[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// Record is one message to produce.
type Record struct {
	// Key picks the partition (murmur2, as the Java client); nil spreads
	// keyless records.
	Key     []byte
	Value   []byte
	Headers []kafka.Header
	// Partition forces a partition when >= 0; -1 lets the key decide.
	Partition int
}

// Produced is where one record was written.
type Produced struct {
	Partition int   `json:"partition"`
	Offset    int64 `json:"offset"`
}

// Produce writes records to topic, creating the topic on first use, and
// returns where each landed, in input order. It returns only once every
// in-sync replica has every record; on error some records may have been
// written.
func (c *Client) Produce(ctx context.Context, topic string, records []Record) ([]Produced, error) {
	if len(records) == 0 {
		return nil, nil
	}
	n, err := c.Partitions(ctx, topic)
	if errors.Is(err, ErrUnknownTopic) {
		if err = c.Ensure(ctx, topic, 0, nil); err == nil {
			n, err = c.Partitions(ctx, topic)
		}
	}
	if err != nil {
		return nil, err
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	bal := kafka.Murmur2Balancer{}
	byPart := make(map[int][]int)
	out := make([]Produced, len(records))
	for i, r := range records {
		p := r.Partition
		if p < 0 || p >= n {
			if r.Partition >= n {
				return nil, fmt.Errorf("producing to %s: %w: %d (the topic has %d)", topic, ErrNoPartition, r.Partition, n)
			}
			p = bal.Balance(kafka.Message{Key: r.Key}, all...)
		}
		byPart[p] = append(byPart[p], i)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for p, idx := range byPart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]kafka.Record, len(idx))
			now := time.Now()
			for j, i := range idx {
				r := records[i]
				recs[j] = kafka.Record{Time: now, Headers: r.Headers}
				if r.Value != nil { // nil is a tombstone
					recs[j].Value = kafka.NewBytes(r.Value)
				}
				if r.Key != nil {
					recs[j].Key = kafka.NewBytes(r.Key)
				}
			}
			resp, err := c.kc.Produce(ctx, &kafka.ProduceRequest{
				Topic: topic, Partition: p, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...),
			})
			if err == nil && resp.Error != nil {
				err = resp.Error
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("producing to %s/%d: %w", topic, p, err))
				mu.Unlock()
				return
			}
			for j, i := range idx {
				out[i] = Produced{Partition: p, Offset: resp.BaseOffset + int64(j)}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		c.forget(topic)
		return out, errors.Join(errs...)
	}
	return out, nil
}

// Message is a record read back from a topic.
type Message struct {
	Partition int
	Offset    int64
	Time      time.Time
	Key       []byte
	Value     []byte
	Headers   []kafka.Header
}

// Read calls fn for each record of topic/partition with offset in
// [from, to), in order, until fn returns false. It reads with plain fetches
// and joins no group.
func (c *Client) Read(ctx context.Context, topic string, partition int, from, to int64, fn func(Message) bool) error {
	for off := from; off < to; {
		resp, err := c.kc.Fetch(ctx, &kafka.FetchRequest{
			Topic: topic, Partition: partition, Offset: off, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond,
		})
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if err != nil {
			return fmt.Errorf("reading %s/%d at %d: %w", topic, partition, off, err)
		}
		progressed := false
		for {
			rec, err := resp.Records.ReadRecord()
			if err != nil {
				break
			}
			if rec.Offset < off {
				continue
			}
			m := Message{Partition: partition, Offset: rec.Offset, Time: rec.Time, Headers: rec.Headers}
			if rec.Key != nil {
				m.Key, _ = kafka.ReadAll(rec.Key)
			}
			if rec.Value != nil {
				m.Value, _ = kafka.ReadAll(rec.Value)
			}
			off = rec.Offset + 1
			progressed = true
			if rec.Offset >= to {
				return nil
			}
			if !fn(m) {
				return nil
			}
		}
		if !progressed {
			if resp.HighWatermark <= off {
				return nil
			}
			// Nothing readable at off (a compacted gap or a control batch).
			off++
		}
	}
	return nil
}

// Owners maps each topic/partition assigned in group to the client id of
// the member that owns it.
func (c *Client) Owners(ctx context.Context, group string) (map[string]map[int]string, error) {
	_, members, err := c.GroupMembers(ctx, group)
	if err != nil {
		return nil, err
	}
	out := map[string]map[int]string{}
	for _, m := range members {
		for topic, ps := range m.Assigned {
			if out[topic] == nil {
				out[topic] = map[int]string{}
			}
			for _, p := range ps {
				out[topic][p] = m.ClientID
			}
		}
	}
	return out, nil
}

// GroupMember is one member of a consumer group, as the coordinator
// describes it.
type GroupMember struct {
	MemberID   string
	ClientID   string
	ClientHost string
	// UserData is what the member published in its subscription.
	UserData []byte
	// Assigned lists the partitions of each topic it owns.
	Assigned map[string][]int
}

// GroupMembers describes group: its state (Stable, PreparingRebalance,
// CompletingRebalance, Empty, Dead) and its members.
func (c *Client) GroupMembers(ctx context.Context, group string) (string, []GroupMember, error) {
	resp, err := c.kc.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return "", nil, fmt.Errorf("describing group %s: %w", group, err)
	}
	for _, g := range resp.Groups {
		if g.Error != nil {
			return "", nil, fmt.Errorf("describing group %s: %w", group, g.Error)
		}
		out := make([]GroupMember, 0, len(g.Members))
		for _, m := range g.Members {
			gm := GroupMember{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost,
				UserData: m.MemberMetadata.UserData, Assigned: map[string][]int{}}
			for _, t := range m.MemberAssignments.Topics {
				gm.Assigned[t.Topic] = append(gm.Assigned[t.Topic], t.Partitions...)
			}
			out = append(out, gm)
		}
		return g.GroupState, out, nil
	}
	return "", nil, fmt.Errorf("describing group %s: no answer", group)
}

// PartitionLag is where a consumer group stands on one partition.
type PartitionLag struct {
	Partition int
	Range
	// Committed is the group's committed offset, -1 when it has none.
	Committed int64
	// Lag is the log end minus the offset the group reads next: its
	// committed offset (no lower than the log start), or without one the
	// log start, or the log end when fromEnd.
	Lag int64
}

// GroupLag returns group's position and lag on every partition of topic,
// in partition order; ErrUnknownTopic when the topic does not exist.
func (c *Client) GroupLag(ctx context.Context, group, topic string, fromEnd bool) ([]PartitionLag, error) {
	n, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	ranges, err := c.Offsets(ctx, topic, n)
	if err != nil {
		return nil, err
	}
	committed, err := c.CommittedOffsets(ctx, group, topic, n)
	if err != nil {
		return nil, err
	}
	out := make([]PartitionLag, n)
	for p := range out {
		rg := ranges[p]
		pl := PartitionLag{Partition: p, Range: rg, Committed: -1}
		next := rg.Start
		if fromEnd {
			next = rg.End
		}
		if c, ok := committed[p]; ok {
			pl.Committed = c
			next = max(c, rg.Start)
		}
		pl.Lag = max(rg.End-next, 0)
		out[p] = pl
	}
	return out, nil
}

// WriteOutputs produces a handler's outputs to topic (consumers.OutputWriter),
// returning once every in-sync replica has them. An output the broker
// refuses as too large is a permanent failure: asking again cannot help.
func (c *Client) WriteOutputs(ctx context.Context, topic string, outs []handlers.Output) error {
	recs := make([]Record, len(outs))
	for i, o := range outs {
		v := o.Value
		if v == nil {
			v = []byte{}
		}
		recs[i] = Record{Key: o.Key, Value: v, Headers: KafkaHeaders(o.Headers), Partition: -1}
	}
	_, err := c.Produce(ctx, topic, recs)
	if errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge) {
		return handlers.Permanent(fmt.Errorf("an output is larger than %s accepts (its max.message.bytes): %w", topic, err))
	}
	return err
}
