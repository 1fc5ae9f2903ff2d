package broker_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/internal/testkit"
)

// Members that join over connections that close before the answer, while
// other members churn around one that stays: the watch removes the silent
// ones (kfake removes some of them itself, and keeps those whose answer it
// dropped), never a live one, and the group re-forms with the member that
// stayed. The watch's deadlines are tested one by one in
// TestGroupWatchDeadlines; the fault itself showed in the fleet-churn test.
func TestGroupWatchUnderChurn(t *testing.T) {
	e, err := broker.Start(broker.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const group, topic = "watched", "watched-topic"
	admin, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := context.Background()
	if err := e.Cluster().CreateTopic(topic, 4, nil); err != nil {
		t.Fatal(err)
	}

	// A third-party member (franz-go's own group consumer) that stays.
	groupConsumer(t, e.Addrs(), group, topic, "stay")
	testkit.Eventually(t, 30*time.Second, func() bool { return groupState(ctx, admin, group) == "Stable 1" },
		"the first member to form the group (%s)", groupState(ctx, admin, group))

	// Ghosts: each takes a member id, joins with it, and is gone before
	// the answer.
	var ghosts []string
	for i := 0; i < 4; i++ {
		ghosts = append(ghosts, ghostJoin(t, ctx, admin, e.Addrs()[0], group, topic))
	}

	// Members keep joining and leaving, each well within the rebalance
	// timeout of the one before, as nodes do in a churning fleet.
	stop := make(chan struct{})
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		for i := 0; ; i++ {
			c := groupConsumer(t, e.Addrs(), group, topic, fmt.Sprintf("churn-%d", i))
			select {
			case <-stop:
				c.Close()
				return
			case <-time.After(2 * time.Second):
			}
			c.Close()
		}
	}()
	testkit.Eventually(t, 45*time.Second, func() bool {
		for _, g := range ghosts {
			if hasMember(ctx, admin, group, g) {
				return false
			}
		}
		return true
	}, "the silent members to be removed while the others churn (%s)", groupState(ctx, admin, group))
	close(stop)
	<-churnDone
	testkit.Eventually(t, 60*time.Second, func() bool { return groupState(ctx, admin, group) == "Stable 1" },
		"the group to re-form with the member that stayed (%s)", groupState(ctx, admin, group))
}

// ghostJoin joins group as a new member over a connection it closes as
// soon as the coordinator has the join, and returns the member id.
func ghostJoin(t *testing.T, ctx context.Context, admin *kgo.Client, addr, group, topic string) string {
	t.Helper()
	first := kmsg.NewPtrJoinGroupRequest()
	first.Group, first.SessionTimeoutMillis, first.RebalanceTimeoutMillis = group, 3000, 5000
	first.ProtocolType = "consumer"
	first.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: (&kmsg.ConsumerMemberMetadata{Topics: []string{topic}}).AppendTo(nil)}}
	resp, err := first.RequestWith(ctx, admin)
	if err != nil || resp.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("first join: %v, code %d; want MEMBER_ID_REQUIRED", err, resp.ErrorCode)
	}
	id := resp.MemberID
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	second := *first
	second.MemberID, second.Version = id, 5
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("ghost")).AppendRequest(nil, &second, 1)
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return hasMember(ctx, admin, group, id) }, "the ghost's join to arrive")
	return id
}

func groupConsumer(t *testing.T, addrs []string, group, topic, id string) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ClientID(id), kgo.SessionTimeout(3*time.Second), kgo.RebalanceTimeout(5*time.Second),
		kgo.Balancers(kgo.RangeBalancer()))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			fs := c.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
		}
	}()
	t.Cleanup(c.Close)
	return c
}

// groupState is the group's state and member count, as "Stable 1".
func groupState(ctx context.Context, cl *kgo.Client, group string) string {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Groups) != 1 {
		return fmt.Sprintf("describe failed: %v", err)
	}
	return fmt.Sprintf("%s %d", resp.Groups[0].State, len(resp.Groups[0].Members))
}

func hasMember(ctx context.Context, cl *kgo.Client, group, id string) bool {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Groups) != 1 {
		return false
	}
	for _, m := range resp.Groups[0].Members {
		if m.MemberID == id {
			return true
		}
	}
	return false
}
