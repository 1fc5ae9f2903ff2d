// Package testkit holds helpers shared by Sluice's tests: an embedded
// broker on a free port, producing test data, and polling for a condition.
package testkit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/topics"
)

// Broker starts an embedded broker in a temp dir on a free port and closes
// it when the test ends.
func Broker(tb testing.TB, opts ...func(*broker.Config)) *broker.Embedded {
	tb.Helper()
	cfg := broker.Config{DataDir: tb.TempDir(), Addr: "127.0.0.1:0", Partitions: 12, Logger: Logger()}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := broker.Start(cfg)
	if err != nil {
		tb.Fatalf("starting embedded broker: %v", err)
	}
	tb.Cleanup(b.Close)
	return b
}

// Logger is a quiet logger for tests; SLUICE_TEST_LOG=debug makes it loud.
func Logger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("SLUICE_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Topics returns a topics client for brokers.
func Topics(tb testing.TB, brokers []string) *topics.Client {
	tb.Helper()
	c, err := topics.New(topics.Config{Brokers: brokers})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Fill produces n messages to topic, batch at a time; key(i) and value(i)
// give each message's key (nil for none) and value.
func Fill(tb testing.TB, c *topics.Client, topic string, n int, key, value func(i int) []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const batch = 5000
	for start := 0; start < n; start += batch {
		end := min(n, start+batch)
		recs := make([]topics.Record, 0, end-start)
		for i := start; i < end; i++ {
			recs = append(recs, topics.Record{Key: key(i), Value: value(i), Partition: -1})
		}
		if _, err := c.Produce(ctx, topic, recs); err != nil {
			tb.Fatalf("producing to %s: %v", topic, err)
		}
	}
}

// Consistently checks cond every 20ms for d and fails the test with msg
// the first time it does not hold. It is how a test shows that something
// does not happen (a paused handler stays silent): there is no event to
// wait for, so the claim is checked throughout the window, not once at its
// end.
func Consistently(tb testing.TB, d time.Duration, cond func() bool, msg string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		if !cond() {
			tb.Fatalf("no longer holds after %s of %s: %s", d-time.Until(deadline), d, fmt.Sprintf(msg, args...))
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually polls cond every 20ms until it holds or timeout passes, then
// fails the test with msg.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for: %s", timeout, fmt.Sprintf(msg, args...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
