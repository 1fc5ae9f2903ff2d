package node

import (
	"context"
	"errors"

	"fmt"
	"sort"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/handlers"
)

// checkTakeover refuses, at apply time, a new handler whose startFrom takes
// over a consumer group that is unknown, still has active members, or has
// no committed offsets on the handler's topic. The engine checks again
// before it reads (consumers/takeover.go): the group may change between.
func (n *Node) checkTakeover(ctx context.Context, spec handlers.Spec) error {
	group, ok := spec.StartFrom.TakeoverGroup()
	if !ok {
		return nil
	}
	field := func(format string, a ...any) error {
		return &handlers.FieldError{Field: "startFrom.group", Msg: fmt.Sprintf(format, a...)}
	}
	state, members, err := n.tc.GroupMembers(ctx, group)
	switch {
	case errors.Is(err, kafka.GroupIdNotFound), err == nil && state == "Dead":
		return field("consumer group %q does not exist: check its name", group)
	case err != nil:
		return fmt.Errorf("checking consumer group %s: %w", group, err)
	case len(members) > 0:
		clients := make([]string, 0, len(members))
		for _, m := range members {
			clients = append(clients, m.ClientID+"@"+m.ClientHost)
		}
		sort.Strings(clients)
		return field("consumer group %q still has %d active member(s) (%s): stop the old consumer first, then apply", group, len(members), strings.Join(clients, ", "))
	}
	parts, err := n.tc.Partitions(ctx, spec.Topic)
	if err != nil {
		return field("consumer group %q has no committed offsets on topic %s (%v)", group, spec.Topic, err)
	}
	offs, err := n.tc.CommittedOffsets(ctx, group, spec.Topic, parts)
	if err != nil {
		return fmt.Errorf("checking consumer group %s: %w", group, err)
	}
	if len(offs) == 0 {
		return field("consumer group %q has no committed offsets on topic %s", group, spec.Topic)
	}
	return nil
}
