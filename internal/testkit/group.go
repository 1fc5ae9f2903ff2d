package testkit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// SilentMember joins group with kafka-go's ConsumerGroup (a third-party
// member) and, from its first generation on, never lets the generation
// end: after the next rebalance it neither rejoins nor leaves nor
// heartbeats, like a process that died. The returned release lets it go
// (it is also called when the test ends); it may be called more than once.
func SilentMember(tb testing.TB, brokers []string, group, topic string, session time.Duration) (release func()) {
	tb.Helper()
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: group, Brokers: brokers, Topics: []string{topic}, SessionTimeout: session,
		RebalanceTimeout: 30 * time.Second, HeartbeatInterval: 300 * time.Millisecond,
		GroupBalancers: []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	stop := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(stop) }) }
	go func() {
		gen, err := cg.Next(context.Background())
		if err != nil {
			return
		}
		gen.Start(func(context.Context) { <-stop })
	}()
	tb.Cleanup(func() {
		release()
		go cg.Close()
	})
	return release
}
