package queues

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// TestNATSDurableOutlivesItsCreator: the durable consumer of a handler's
// group stays when the subscription that created it ends (nats.go deletes
// a consumer it created itself), so the other nodes keep reading and the
// group keeps its position; a later subscription with another concurrency
// brings the durable's max ack pending to it.
func TestNATSDurableOutlivesItsCreator(t *testing.T) {
	d, err := newNATS(suiteConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	topic := strings.ReplaceAll(uniqueName("durable"), "-", "_")
	group := "sluice_" + topic
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, js, err := d.conn()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(durableName(topic)) }()

	first, err := d.subscriber(ctx, topic, group, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	second, err := d.subscriber(ctx, topic, group, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	msgs, err := second.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := js.ConsumerInfo(durableName(topic), durableName(group)); err != nil {
		t.Fatalf("the durable is gone with its creator's subscription: %v", err)
	}
	if err := d.publish(ctx, topic, []*message.Message{message.NewMessage("m1", []byte("x"))}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if m.UUID != "m1" {
			t.Fatalf("got %q", m.UUID)
		}
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the remaining subscription got nothing")
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}

	third, err := d.subscriber(ctx, topic, group, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if _, err := third.Subscribe(ctx, topic); err != nil {
		t.Fatalf("subscribing with another concurrency: %v", err)
	}
	ci, err := js.ConsumerInfo(durableName(topic), durableName(group))
	if err != nil {
		t.Fatal(err)
	}
	if ci.Config.MaxAckPending != 3 || ci.NumPending != 0 {
		t.Fatalf("max ack pending %d, pending %d; want 3 and 0 (m1 was acked)", ci.Config.MaxAckPending, ci.NumPending)
	}
}
