package kafkawm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/queues/kafkawm"
	"github.com/sluicehq/sluice/topics"
)

// TestMappingKeysAndClose checks the record a message becomes (read back
// with a plain fetch), the message a record becomes, that one key's
// messages share a partition and come in order, and the closed pair's
// errors.
func TestMappingKeysAndClose(t *testing.T) {
	brokers := newCluster(t)
	cfg := testConfig(brokers, "mapping", 4)
	pub, err := kafkawm.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := kafkawm.NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "mapping"
	var sent []*message.Message
	for i := range 20 {
		m := message.NewMessage("id-"+string(rune('a'+i)), []byte{byte(i)})
		m.Metadata.Set("key", "k1")
		m.Metadata.Set("h", "v")
		sent = append(sent, m)
	}
	if err := pub.Publish(topic, sent...); err != nil {
		t.Fatal(err)
	}

	// The records: key k1, headers _watermill_message_uuid and h, all in
	// one partition, in order.
	tc, err := topics.New(topics.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ranges, err := tc.Offsets(ctx, topic, 4)
	if err != nil {
		t.Fatal(err)
	}
	var got []topics.Message
	for p, r := range ranges {
		if err := tc.Read(ctx, topic, p, r.Start, r.End, func(m topics.Message) bool { got = append(got, m); return true }); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 20 {
		t.Fatalf("%d records, want 20", len(got))
	}
	for i, r := range got {
		if r.Partition != got[0].Partition || string(r.Key) != "k1" || r.Value[0] != byte(i) {
			t.Fatalf("record %d: partition %d key %q value %v", i, r.Partition, r.Key, r.Value)
		}
		hs := map[string]string{}
		for _, h := range r.Headers {
			hs[h.Key] = string(h.Value)
		}
		if len(hs) != 2 || hs["_watermill_message_uuid"] != sent[i].UUID || hs["h"] != "v" {
			t.Fatalf("record %d headers %v", i, hs)
		}
	}

	// The messages: the same UUIDs, metadata and payloads, in order.
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		select {
		case m := <-msgs:
			if m.UUID != sent[i].UUID || m.Payload[0] != byte(i) || m.Metadata.Get("key") != "k1" || m.Metadata.Get("h") != "v" || len(m.Metadata) != 2 {
				t.Fatalf("message %d: %s %v %v", i, m.UUID, m.Payload, m.Metadata)
			}
			if p, ok := kafkawm.MessagePartitionFromCtx(m.Context()); !ok || p != got[0].Partition {
				t.Fatalf("message %d: partition %d %v", i, p, ok)
			}
			if o, ok := kafkawm.MessageOffsetFromCtx(m.Context()); !ok || o != got[i].Offset {
				t.Fatalf("message %d: offset %d %v", i, o, ok)
			}
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("message %d not received", i)
		}
	}

	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	select {
	case _, open := <-msgs:
		if open {
			t.Fatal("a message after Close")
		}
	case <-ctx.Done():
		t.Fatal("the channel is not closed after Close")
	}
	if _, err := sub.Subscribe(ctx, topic); !errors.Is(err, kafkawm.ErrSubscriberClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := pub.Publish(topic, message.NewMessage("x", nil)); !errors.Is(err, kafkawm.ErrPublisherClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}

	// The acks were committed: the group starts after them.
	offs, err := tc.CommittedOffsets(ctx, "mapping", topic, 4)
	if err != nil {
		t.Fatal(err)
	}
	if offs[got[0].Partition] != got[19].Offset+1 {
		t.Fatalf("committed %v, want %d on partition %d", offs, got[19].Offset+1, got[0].Partition)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := kafkawm.NewSubscriber(kafkawm.Config{}); err == nil {
		t.Fatal("a subscriber without brokers")
	}
	cfg := testConfig([]string{"127.0.0.1:1"}, "", 0)
	if _, err := kafkawm.NewSubscriber(cfg); err == nil {
		t.Fatal("a subscriber without a group")
	}
	cfg.ConsumerGroup = "g"
	sub, err := kafkawm.NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(context.Background(), "bad topic"); err == nil {
		t.Fatal("a topic with a space")
	}
	pub, err := kafkawm.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish("", message.NewMessage("x", nil)); err == nil {
		t.Fatal("an empty topic")
	}
}
