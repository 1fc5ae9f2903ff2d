package kafkawm_test

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/queues/kafkawm"
)

// suiteFull runs the suite's full variants (50 subscribers of one group,
// 10000 messages...): SLUICE_SUITE_FULL=1 go test -race ./queues/kafkawm/
// By default the short ones run (the same tests, fewer subscribers and
// messages), which make test can afford on a loaded machine.
var suiteFull = os.Getenv("SLUICE_SUITE_FULL") == "1"

// newCluster starts an in-process Kafka (kfake) for one test.
func newCluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(50),
		kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// testConfig is the configuration under test. The group timings are
// shorter than the defaults so that the suite's many joins and leaves
// rebalance quickly; NackResendSleep is short because the suite nacks
// hundreds of messages one after the other (TestContinueAfterErrors).
func testConfig(brokers []string, group string, partitions int) kafkawm.Config {
	return kafkawm.Config{
		Kafka: consumers.KafkaConfig{
			Brokers:           brokers,
			SessionTimeout:    6 * time.Second,
			HeartbeatInterval: 200 * time.Millisecond,
			RebalanceTimeout:  10 * time.Second,
			FetchMaxWait:      100 * time.Millisecond,
			Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		},
		ConsumerGroup:   group,
		Partitions:      partitions,
		NackResendSleep: 10 * time.Millisecond,
	}
}

func constructors(brokers []string, partitions int) (tests.PubSubConstructor, tests.ConsumerGroupPubSubConstructor) {
	withGroup := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		cfg := testConfig(brokers, group, partitions)
		pub, err := kafkawm.NewPublisher(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := kafkawm.NewSubscriber(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	return func(t *testing.T) (message.Publisher, message.Subscriber) { return withGroup(t, suiteGroup(t)) }, withGroup
}

// suiteGroup is the group of the subscribers of one test of the suite (its
// name's first two parts, TestPubSub/TestPublishSubscribe): the
// subscribers of a test share it, as the test needs, and the tests running
// in parallel do not. A group shared by every test (watermill-kafka's
// suite uses "test") rebalances all of them at every join and leave of
// any, which on a loaded machine kept some tests' members from ever
// settling within the suite's 15-45 s reads.
func suiteGroup(t *testing.T) string {
	parts := strings.SplitN(t.Name(), "/", 3)
	if len(parts) > 2 {
		parts = parts[:2]
	}
	return strings.Join(parts, ".")
}

// TestPubSub runs Watermill's universal suite against the pair, with the
// features that hold on topics of several partitions and messages without
// a key: consumer groups, persistence, at-least-once delivery, no order
// across partitions. Skipped by the suite for these features:
// TestPublishSubscribeInOrder and TestNoAck (they need GuaranteedOrder:
// see TestPubSubOrdered), TestNewSubscriberReceivesOldMessages (every
// subscriber here is a group member; the pair has no group-less mode),
// TestReconnect (it restarts the broker with a shell command; the
// in-process broker cannot be restarted on its address).
func TestPubSub(t *testing.T) {
	pubSub, withGroup := constructors(newCluster(t), 8)
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false,
		GuaranteedOrder:     false,
		Persistent:          true,
		ForceShort:          !suiteFull,
	}, pubSub, withGroup)
}

// TestPubSubOrdered runs the suite on topics of one partition, where the
// order of all messages holds (on topics of several partitions it holds
// per key: a partition's messages come one at a time, in order).
func TestPubSubOrdered(t *testing.T) {
	pubSub, withGroup := constructors(newCluster(t), 1)
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false,
		GuaranteedOrder:     true,
		Persistent:          true,
		ForceShort:          !suiteFull,
	}, pubSub, withGroup)
}
