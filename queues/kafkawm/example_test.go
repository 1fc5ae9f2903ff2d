package kafkawm_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/queues/kafkawm"
)

// A publisher and a subscriber on one cluster (here an in-process one; a
// node passes its own consumers.KafkaConfig, whose Dialer carries TLS and
// SASL).
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()

	cfg := kafkawm.Config{
		Kafka: consumers.KafkaConfig{
			Brokers: cluster.ListenAddrs(),
			Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		},
		ConsumerGroup: "billing",
	}
	pub, err := kafkawm.NewPublisher(cfg)
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	sub, err := kafkawm.NewSubscriber(cfg)
	if err != nil {
		panic(err)
	}
	defer sub.Close()

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"id":7}`))
	msg.Metadata.Set("key", "customer-1") // the record's key: its partition
	if err := pub.Publish("orders", msg); err != nil {
		panic(err)
	}

	msgs, err := sub.Subscribe(context.Background(), "orders")
	if err != nil {
		panic(err)
	}
	got := <-msgs
	fmt.Println(string(got.Payload), got.Metadata.Get("key"), got.UUID == msg.UUID)
	got.Ack() // commits its offset
	// Output: {"id":7} customer-1 true
}
