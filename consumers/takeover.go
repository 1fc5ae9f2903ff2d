package consumers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// takeover.go: starting a handler where a legacy consumer group committed
// (startFrom: {group: NAME}). The invariant: a partition of the handler's
// topic without a committed offset of its own starts at the legacy group's
// committed offset, and that offset is committed for the handler's group
// before anything is read, so every later assignment starts from the
// handler's own offsets and the legacy group is consulted at most once
// per partition. While the legacy group has active members nothing is
// read: two consumers would process the same messages.

// noOffset marks, during resolve, a partition of the handler's topic that
// the takeover must position.
const noOffset int64 = -3

// SourceOption configures a KafkaSource.
type SourceOption func(*KafkaSource)

// TakeOver makes the source start the handler's topic where group
// committed, on every partition that has no committed offset of the
// handler's own group; a partition the legacy group never committed
// starts at the source's startFrom. The source refuses to start (and
// reports why, retrying) while group has active members, is unknown, or
// has no committed offsets on the topic.
func TakeOver(group string) SourceOption {
	return func(s *KafkaSource) { s.takeover = group }
}

// ErrTakeover is the error of a takeover that cannot start yet.
var ErrTakeover = errors.New("cannot take over the consumer group")

// legacyOffsets checks the legacy group and returns its committed offsets
// on topic, by partition.
func (k *kafkaSession) legacyOffsets(ctx context.Context, topic string, partitions []int) (map[int]int64, error) {
	group := k.src.takeover
	desc, err := k.m.ctl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, fmt.Errorf("describing group %s: %w", group, err)
	}
	if len(desc.Groups) != 1 {
		return nil, fmt.Errorf("describing group %s: no answer", group)
	}
	g := desc.Groups[0]
	switch {
	case errors.Is(g.Error, kafka.GroupIdNotFound), g.Error == nil && g.GroupState == "Dead":
		return nil, fmt.Errorf("%w %q: no such group; check its name", ErrTakeover, group)
	case g.Error != nil:
		return nil, fmt.Errorf("describing group %s: %w", group, g.Error)
	case len(g.Members) > 0:
		clients := make([]string, 0, len(g.Members))
		for _, m := range g.Members {
			clients = append(clients, m.ClientID+"@"+m.ClientHost)
		}
		sort.Strings(clients)
		return nil, fmt.Errorf("%w %q: it still has %d active member(s) (%s): stop the old consumer; the handler starts once the group is empty",
			ErrTakeover, group, len(g.Members), strings.Join(clients, ", "))
	}
	resp, err := k.m.ctl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err != nil {
		return nil, fmt.Errorf("fetching the offsets of group %s: %w", group, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetching the offsets of group %s: %w", group, resp.Error)
	}
	out := make(map[int]int64, len(partitions))
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("fetching the offset of group %s on %s/%d: %w", group, topic, p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w %q: it has no committed offsets on topic %s", ErrTakeover, group, topic)
	}
	return out, nil
}

// takeOver gives the handler's topic's assigned partitions without an
// offset of their own the legacy group's offsets, and commits them.
func (k *kafkaSession) takeOver() error {
	topic := k.src.topics[0]
	var need []int
	for _, a := range k.assigns {
		if a.Topic == topic && a.Offset == noOffset {
			need = append(need, a.Partition)
		}
	}
	if len(need) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(k.ctx, 10*time.Second)
	defer cancel()
	// All partitions, so "no offsets on the topic" means the topic, not
	// only this member's share of it.
	n, err := k.partitionCount(ctx, topic)
	if err != nil {
		return err
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	legacy, err := k.legacyOffsets(ctx, topic, all)
	if err != nil {
		return err
	}
	commit := map[int]int64{}
	for i, a := range k.assigns {
		if a.Topic != topic || a.Offset != noOffset {
			continue
		}
		if off, ok := legacy[a.Partition]; ok {
			k.assigns[i].Offset = off
			commit[a.Partition] = off
		}
	}
	if len(commit) == 0 {
		return nil
	}
	if err := k.Commit(ctx, map[string]map[int]int64{topic: commit}); err != nil {
		return fmt.Errorf("committing the offsets taken over from group %s: %w", k.src.takeover, err)
	}
	k.src.cfg.Logger.Info("took over the consumer group's offsets", "group", k.src.takeover, "topic", topic, "offsets", commit)
	return nil
}

func (k *kafkaSession) partitionCount(ctx context.Context, topic string) (int, error) {
	md, err := k.m.ctl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("reading the partitions of %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return 0, fmt.Errorf("reading the partitions of %s: %w", topic, t.Error)
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("reading the partitions of %s: not in the metadata", topic)
}
