package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
)

// TestQueueKill9MidStreamLosesNothing: per queue source, a node killed
// with SIGKILL mid-stream and started again delivers every message, with
// no more duplicates than the messages it held unacknowledged at the kill.
// The queues give a dead consumer's messages to the next after
// --redeliver-after (3s here; RabbitMQ at once).
func TestQueueKill9MidStreamLosesNothing(t *testing.T) {
	for _, source := range []string{"redis", "nats", "amqp", "postgres"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			var b [4]byte
			_, _ = rand.Read(b[:])
			topic := "kill_" + source + "_" + hex.EncodeToString(b[:])
			name := strings.ReplaceAll(topic, "_", "-")
			o := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t), extra: []string{"--redeliver-after", "3s"}}
			node := serve(t, o)
			ep := newSink(t, 20*time.Millisecond)
			const concurrency = 8
			spec := fmt.Sprintf("name: %s\nsource: %s\ntopic: %s\nconcurrency: %d\nhttp:\n  url: %s\n  timeout: 5s\n",
				name, source, topic, concurrency, ep.URL)
			// Publish first, so that the handler cannot keep pace with the
			// publisher and finish before the kill.
			const total = 1500
			cli(t, o.httpAddr, lines("m-", 0, total, false), "publish", "--source", source, topic)
			if out := cli(t, o.httpAddr, spec, "handler", "apply", "-f", "-"); !strings.Contains(out, "created") {
				t.Fatalf("apply said %q", out)
			}
			testkit.Eventually(t, 90*time.Second, func() bool { return ep.distinctValues() >= 200 }, "200 deliveries before the kill")
			node.kill()
			before := ep.distinctValues()
			if before >= total {
				t.Fatalf("everything was delivered before the kill (%d): the test did not kill mid-stream", before)
			}
			serve(t, o)
			testkit.Eventually(t, 120*time.Second, func() bool { return ep.distinctValues() == total }, "all %d messages after the restart", total)
			if miss := ep.missing("m-", total); len(miss) > 0 {
				t.Fatalf("%d messages lost, first %v", len(miss), miss[0])
			}
			dups := ep.duplicates()
			fmt.Printf("kill -9 mid-stream on %s: %d of %d delivered, %d duplicates (%d delivered before the kill)\n",
				source, total, total, dups, before)
			// Each message is acknowledged as it finishes: only those in hand
			// at the kill (one per subscription) come again; on PostgreSQL,
			// watermill-sql's batch (10 rows), whose offsets are stored as
			// one.
			if dups > 2*concurrency {
				t.Fatalf("%d duplicates after one kill -9, more than the %d messages a node holds", dups, 2*concurrency)
			}
		})
	}
}
