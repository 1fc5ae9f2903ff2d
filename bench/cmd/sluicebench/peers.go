package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice"
)

const (
	peerSluiceKey  = "sluice-key"
	peerSluiceNone = "sluice-none"
	peerKafkaGo    = "kafka-go"
	peerWatermill  = "watermill"
)

var consumers = map[string]consumer{
	peerSluiceKey:         func(ctx context.Context, c consumeSpec) error { return runSluice(ctx, c, "key") },
	peerSluiceNone:        func(ctx context.Context, c consumeSpec) error { return runSluice(ctx, c, "none") },
	peerKafkaGo:           runKafkaGo,
	peerWatermill:         runWatermill,
	peerHTTPSingle:        func(ctx context.Context, c consumeSpec) error { return runSluiceHTTP(ctx, c, false) },
	peerUnlimitedFixed:    func(ctx context.Context, c consumeSpec) error { return runAdaptive(ctx, c, false, adaptiveMax) },
	peerUnlimitedAdaptive: func(ctx context.Context, c consumeSpec) error { return runAdaptive(ctx, c, false, 0) },
	peerKneeFixed:         func(ctx context.Context, c consumeSpec) error { return runAdaptive(ctx, c, true, adaptiveMax) },
	peerKnee40:            func(ctx context.Context, c consumeSpec) error { return runAdaptive(ctx, c, true, 40) },
	peerKnee48:            func(ctx context.Context, c consumeSpec) error { return runAdaptive(ctx, c, true, 48) },
	peerKneeAdaptive:      func(ctx context.Context, c consumeSpec) error { return runAdaptive(ctx, c, true, 0) },
	peerHTTPBatch:         func(ctx context.Context, c consumeSpec) error { return runSluiceHTTP(ctx, c, true) },
}

// runSluice embeds a Sluice node, as a Go program would, with one Go
// handler. The node joins the group itself; the clock starts once it has
// started (API listening), so it includes registering the handler and
// joining the group.
func runSluice(ctx context.Context, c consumeSpec, ordering string) error {
	app, err := sluice.New(
		sluice.WithBrokers(c.brokers...),
		sluice.WithHTTPAddr("127.0.0.1:0"),
		sluice.WithLogger(c.log),
	)
	if err != nil {
		return err
	}
	// The spec is built from its JSON form, the API's stable contract, so
	// this program keeps compiling as the Go types of Spec's fields evolve.
	var spec sluice.Spec
	js, _ := json.Marshal(map[string]any{"name": c.name, "topic": c.topic, "ordering": ordering, "concurrency": c.concurrency})
	if err := json.Unmarshal(js, &spec); err != nil {
		return fmt.Errorf("handler spec: %w", err)
	}
	err = app.Handle(spec, func(context.Context, *sluice.Message) error {
		c.handle()
		return nil
	})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case <-app.Started():
		c.started()
	case err := <-done:
		return err
	}
	return <-done
}

// runKafkaGo is the loop most kafka-go users write: one consumer-group
// Reader, one goroutine, FetchMessage, handle, CommitMessages. Commits are
// asynchronous (CommitInterval 1s, Sluice's default too); everything else
// is kafka-go's default.
func runKafkaGo(ctx context.Context, c consumeSpec) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        c.brokers,
		GroupID:        "bench." + c.name,
		Topic:          c.topic,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: time.Second,
	})
	c.started()
	var err error
	for {
		var m kafka.Message
		if m, err = r.FetchMessage(ctx); err != nil {
			break
		}
		c.handle()
		if err = r.CommitMessages(ctx, m); err != nil {
			break
		}
	}
	if ctx.Err() != nil {
		err = nil
	}
	if cerr := r.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("closing reader: %w", cerr))
	}
	return err
}

// runWatermill is the Watermill Router over watermill-kafka's Subscriber
// with its documented defaults (DefaultSaramaSubscriberConfig) and the one
// change everyone makes: start from the oldest offset.
func runWatermill(ctx context.Context, c consumeSpec) error {
	sc := wkafka.DefaultSaramaSubscriberConfig()
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers:               c.brokers,
		Unmarshaler:           wkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         "bench." + c.name,
	}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	router.AddConsumerHandler(c.name, c.topic, sub, func(*message.Message) error {
		c.handle()
		return nil
	})
	c.started()
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	select {
	case <-ctx.Done():
		err = router.Close()
		if rerr := <-done; rerr != nil {
			err = errors.Join(err, rerr)
		}
	case err = <-done: // Run failed, or every handler stopped
		if err == nil {
			err = errors.New("router stopped")
		}
	}
	if serr := sub.Close(); serr != nil {
		err = errors.Join(err, fmt.Errorf("closing subscriber: %w", serr))
	}
	return err
}
