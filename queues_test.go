package sluice_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
)

// queues_test.go: each queue source end to end, against the local servers
// (Redis, NATS JetStream, RabbitMQ, PostgreSQL), with messages written by
// each queue's ordinary clients: redis-cli, a NATS client, an AMQP client,
// psql.

// queueSource is one queue under test: how a third-party client writes a
// message with a key to topic.
type queueSource struct {
	name  string
	write func(t *testing.T, topic, key, value string)
	// deadLetters reads, with the same client, the payloads of the
	// dead-letter topic named dlq on that server, without consuming them.
	deadLetters func(t *testing.T, dlq string) []string
}

func unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var queueSources = []queueSource{
	{"redis", func(t *testing.T, topic, key, value string) {
		run(t, "redis-cli", "-h", "127.0.0.1", "XADD", topic, "*", "key", key, "value", value, "origin", "redis-cli")
	}, func(t *testing.T, dlq string) []string {
		// XRANGE prints each entry's id, then its fields and values, a
		// line each: the payload follows the line "payload".
		lines := strings.Split(strings.TrimSpace(run(t, "redis-cli", "-h", "127.0.0.1", "--no-raw", "XRANGE", dlq, "-", "+")), "\n")
		var out []string
		for i, l := range lines {
			if strings.HasSuffix(l, `"payload"`) && i+1 < len(lines) {
				v := lines[i+1]
				out = append(out, strings.Trim(v[strings.Index(v, `"`):], `"`))
			}
		}
		return out
	}},
	{"nats", func(t *testing.T, topic, key, value string) {
		nc, err := nats.Connect("nats://127.0.0.1:4222")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(topic)
		m.Data = []byte(value)
		m.Header.Set("key", key)
		m.Header.Set("origin", "nats.go")
		if _, err := js.PublishMsg(m); err != nil {
			t.Fatalf("nats publish: %v", err)
		}
	}, func(t *testing.T, dlq string) []string {
		nc, err := nats.Connect("nats://127.0.0.1:4222")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			t.Fatal(err)
		}
		sub, err := js.SubscribeSync(dlq, nats.OrderedConsumer(), nats.DeliverAll())
		if err != nil {
			t.Fatalf("nats subscribe %s: %v", dlq, err)
		}
		defer sub.Unsubscribe()
		var out []string
		for {
			m, err := sub.NextMsg(time.Second)
			if err != nil {
				return out
			}
			out = append(out, string(m.Data))
		}
	}},
	{"amqp", func(t *testing.T, topic, key, value string) {
		conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		conf, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", topic, true, false, amqp.Publishing{
			Body: []byte(value), Headers: amqp.Table{"key": key, "origin": "amqp091"}, DeliveryMode: amqp.Persistent,
		})
		if err != nil || !conf.Wait() {
			t.Fatalf("amqp publish: %v", err)
		}
	}, func(t *testing.T, dlq string) []string {
		// A stream queue, read from its first offset: reading takes
		// nothing away.
		conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Qos(100, 0, false); err != nil {
			t.Fatal(err)
		}
		ds, err := ch.Consume(dlq, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
		if err != nil {
			t.Fatalf("amqp consume %s: %v", dlq, err)
		}
		var out []string
		for {
			select {
			case d := <-ds:
				out = append(out, string(d.Body))
				_ = d.Ack(false)
			case <-time.After(time.Second):
				return out
			}
		}
	}},
	{"postgres", func(t *testing.T, topic, key, value string) {
		md, _ := json.Marshal(map[string]string{"key": key, "origin": "psql"})
		run(t, "psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc",
			fmt.Sprintf(`INSERT INTO "watermill_%s" (payload, metadata) VALUES (convert_to('%s', 'UTF8'), '%s')`, topic, value, md))
	}, func(t *testing.T, dlq string) []string {
		out := run(t, "psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc",
			fmt.Sprintf(`SELECT convert_from(payload, 'UTF8') FROM "watermill_%s" ORDER BY "offset"`, dlq))
		return strings.Fields(out)
	}},
}

// TestQueueSourcesDeliverDeadLetterAndReplay: per source, messages written
// by the queue's own client all reach the handler with their key and
// headers; a poison message is attempted exactly maxAttempts times and
// dead-lettered once; a replay delivers it again; the backlog drains to 0.
func TestQueueSourcesDeliverDeadLetterAndReplay(t *testing.T) {
	n := startNode(t, sluice.WithConfig(sluice.Config{RedeliverAfter: 10 * time.Second}))
	for _, qs := range queueSources {
		t.Run(qs.name, func(t *testing.T) {
			topic := unique("sq_" + qs.name)
			handler := strings.ReplaceAll(unique("h-"+qs.name), "_", "-")
			var poisonFixed atomic.Bool
			ep := newScripted(t, func(body string, _ int) (int, http.Header, time.Duration) {
				if body == "poison" && !poisonFixed.Load() {
					return 500, nil, 0
				}
				return 200, nil, 0
			})
			n.apply(t, fmt.Sprintf(`{"name":%q,"source":%q,"topic":%q,"http":{"url":%q},"concurrency":8,
				"retry":{"maxAttempts":3,"initialBackoff":"10ms","maxBackoff":"50ms"}}`, handler, qs.name, topic, ep.URL))
			testkit.Eventually(t, 30*time.Second, func() bool { return n.handler(t, handler).Status.State == "running" },
				"%s handler running (provisioned)", qs.name)

			const good = 40
			for i := 0; i < good/2; i++ {
				qs.write(t, topic, fmt.Sprintf("k%d", i%5), fmt.Sprintf("good-%d", i))
			}
			qs.write(t, topic, "k-poison", "poison")
			for i := good / 2; i < good; i++ {
				qs.write(t, topic, fmt.Sprintf("k%d", i%5), fmt.Sprintf("good-%d", i))
			}
			// And one through Sluice's own publish, into the same queue.
			code, body := n.do(t, "POST", "/v1/topics/"+topic+"/messages?source="+qs.name,
				`{"messages":[{"key":"via-api","value":"good-api","headers":{"h1":"v1"}}]}`)
			if code != 200 {
				t.Fatalf("publish ?source=%s: %d %s", qs.name, code, body)
			}
			var pr api.PublishResponse
			if err := json.Unmarshal(body, &pr); err != nil || len(pr.Results) != 1 || pr.Results[0].ID == "" {
				t.Fatalf("publish response %s", body)
			}

			testkit.Eventually(t, 60*time.Second, func() bool { return ep.okCount() == good+1 }, "%d good messages", good+1)
			testkit.Eventually(t, 30*time.Second, func() bool { return n.dlq(t, handler, "").Total == 1 }, "one dead letter")
			if got := ep.attemptsOf("poison"); got != 3 {
				t.Fatalf("poison attempted %d times, want exactly 3", got)
			}
			e := n.dlq(t, handler, "").Entries[0]
			if e.Attempts != 3 || e.Key != "k-poison" || e.SourceTopic != topic || !strings.Contains(e.Error, "HTTP 500") {
				t.Fatalf("dead letter %+v", e)
			}
			// The dead letter is on the queue's own server, where the
			// queue's own client reads it.
			dlqTopic := n.handler(t, handler).Spec.DeadLetter.Topic
			where, dlqName := handlers.SplitDeadLetterTopic(dlqTopic)
			if string(where) != qs.name || dlqTopic != handlers.DefaultDeadLetterTopic(where, handler) {
				t.Fatalf("dead-letter topic %q, want the default on %s", dlqTopic, qs.name)
			}
			if got := qs.deadLetters(t, dlqName); len(got) != 1 || got[0] != "poison" {
				t.Fatalf("%s's own client reads %q from %s, want [poison]", qs.name, got, dlqName)
			}
			for i := 0; i < good; i++ {
				if a := ep.attemptsOf(fmt.Sprintf("good-%d", i)); a != 1 {
					t.Fatalf("good-%d delivered %d times, want 1", i, a)
				}
			}

			poisonFixed.Store(true)
			if job := n.dlqJob(t, handler, "replay", "", `{"all":true}`); job.State != "succeeded" || job.Done != 1 {
				t.Fatalf("replay: %+v", job)
			}
			testkit.Eventually(t, 60*time.Second, func() bool { return ep.okCount() == good+2 }, "the replayed poison handled")
			testkit.Eventually(t, 30*time.Second, func() bool {
				h := n.handler(t, handler)
				return h.Status.Replayed == 1 && h.Status.Succeeded == good+2 && h.Status.DeadLettered == 1
			}, "status counts: replayed 1, succeeded %d, dead-lettered 1", good+2)
			testkit.Eventually(t, 30*time.Second, func() bool {
				h := n.handler(t, handler)
				return h.Status.Source == qs.name && h.Status.Lag == 0 && h.Status.Unacked <= 0
			}, "backlog drained")
			if p := n.dlq(t, handler, "?state=dead"); p.Total != 0 {
				t.Fatalf("%d entries still dead after the replay", p.Total)
			}
			// Listing, showing and replaying took nothing from the server:
			// the entry stays, marked replayed.
			if got := qs.deadLetters(t, dlqName); len(got) != 1 {
				t.Fatalf("after the replay %s holds %q, want the one dead letter still", dlqName, got)
			}
			if p := n.dlq(t, handler, "?state=replayed"); p.Total != 1 {
				t.Fatalf("%d entries replayed, want 1", p.Total)
			}
			// A deleted handler's dead letters stay reachable on the server
			// by naming the topic.
			if code, body := n.do(t, "DELETE", "/v1/handlers/"+handler, ""); code/100 != 2 {
				t.Fatalf("delete: %d %s", code, body)
			}
			if p := n.dlq(t, handler, "?topic="+url.QueryEscape(dlqTopic)); p.Total != 1 || p.Entries[0].State != "replayed" {
				t.Fatalf("the deleted handler's dead letters with ?topic=%s: %+v", dlqTopic, p)
			}
		})
	}
}

// TestQueueOutageOpensTheBreakerAndDeadLettersNothing: per source, a 20s
// outage of the endpoint while messages keep arriving ends with every
// message handled and no dead letter: the breaker pauses the source, and
// the messages in hand wait unacknowledged.
func TestQueueOutageOpensTheBreakerAndDeadLettersNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20-second outage")
	}
	n := startNode(t)
	for _, qs := range queueSources {
		t.Run(qs.name, func(t *testing.T) {
			t.Parallel()
			topic := unique("out_" + qs.name)
			handler := strings.ReplaceAll(topic, "_", "-")
			var down atomic.Bool
			down.Store(true)
			var downHits atomic.Int64
			ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) {
				if down.Load() {
					downHits.Add(1)
					return 503, nil, 0
				}
				return 200, nil, 0
			})
			n.apply(t, fmt.Sprintf(`{"name":%q,"source":%q,"topic":%q,"http":{"url":%q},"concurrency":8,
				"retry":{"maxAttempts":3,"initialBackoff":"20ms","maxBackoff":"100ms"},
				"breaker":{"minRequests":10,"failureRatio":0.5,"openFor":"2s"}}`, handler, qs.name, topic, ep.URL))
			testkit.Eventually(t, 30*time.Second, func() bool { return n.handler(t, handler).Status.State == "running" }, "running")
			outageEnds := time.Now().Add(20 * time.Second)
			sent, sawOpen := 0, false
			for time.Now().Before(outageEnds) {
				var msgs []string
				for i := sent; i < sent+10; i++ {
					msgs = append(msgs, fmt.Sprintf(`{"value":"m-%d"}`, i))
				}
				if code, body := n.do(t, "POST", "/v1/topics/"+topic+"/messages?source="+qs.name, `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
					t.Fatalf("publish: %d %s", code, body)
				}
				sent += 10
				if n.handler(t, handler).Status.Breaker.State == "open" {
					sawOpen = true
				}
				time.Sleep(250 * time.Millisecond)
			}
			down.Store(false)
			hits := downHits.Load()
			testkit.Eventually(t, 90*time.Second, func() bool { return ep.okCount() == sent }, "all %d messages after recovery", sent)
			h := n.handler(t, handler)
			if !sawOpen || h.Status.Breaker.Opened == 0 {
				t.Fatalf("the breaker never opened: %+v", h.Status.Breaker)
			}
			if p := n.dlq(t, handler, ""); p.Total != 0 || h.Status.DeadLettered != 0 {
				t.Fatalf("the outage dead-lettered %d messages", p.Total)
			}
			t.Logf("%s outage: %d messages, %d failed requests in 20s, breaker opened %d times", qs.name, sent, hits, h.Status.Breaker.Opened)
			if hits >= int64(sent) {
				t.Fatalf("%d requests hit the endpoint during the outage for %d messages: consumption did not pause", hits, sent)
			}
		})
	}
}

// TestQueueServerDownIsAnErrorUntilItReturns: a handler whose Redis does
// not answer is in state error with the reason within seconds, at start
// and mid-stream (kill -9 of the server), and consumes again, losing
// nothing, once the server is back.
func TestQueueServerDownIsAnErrorUntilItReturns(t *testing.T) {
	port := strings.TrimPrefix(freePort(t), "127.0.0.1:")
	dir := t.TempDir()
	var redis *exec.Cmd
	startRedis := func() {
		redis = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "yes",
			"--appendfsync", "always", "--dir", dir)
		if err := redis.Start(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 10*time.Second, func() bool {
			return exec.Command("redis-cli", "-p", port, "ping").Run() == nil
		}, "redis-server on %s up", port)
	}
	t.Cleanup(func() {
		if redis != nil && redis.Process != nil {
			_ = redis.Process.Kill()
			_ = redis.Wait()
		}
	})
	n := startNode(t, sluice.WithConfig(sluice.Config{RedisURL: "redis://127.0.0.1:" + port + "/0"}))
	ep := newScripted(t, func(string, int) (int, http.Header, time.Duration) { return 200, nil, 0 })
	n.apply(t, fmt.Sprintf(`{"name":"down","source":"redis","topic":"down_stream","http":{"url":%q}}`, ep.URL))
	isError := func() bool {
		h := n.handler(t, "down")
		return h.Status.State == "error" && strings.Contains(h.Status.LastError, "127.0.0.1:"+port)
	}
	testkit.Eventually(t, 15*time.Second, isError, "state error naming the unreachable server")

	startRedis()
	testkit.Eventually(t, 30*time.Second, func() bool { return n.handler(t, "down").Status.State == "running" }, "running once the server is up")
	publish := func(v string) {
		if code, body := n.do(t, "POST", "/v1/topics/down_stream/messages?source=redis", `{"messages":[{"value":"`+v+`"}]}`); code != 200 {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	publish("before")
	testkit.Eventually(t, 30*time.Second, func() bool { return ep.okCount() == 1 }, "delivered before the server's kill")

	_ = redis.Process.Kill()
	_ = redis.Wait()
	testkit.Eventually(t, 15*time.Second, isError, "state error once the server is killed")
	if code, _ := n.do(t, "POST", "/v1/topics/down_stream/messages?source=redis", `{"messages":[{"value":"x"}]}`); code != 502 {
		t.Fatalf("publishing to a dead server answered %d, want 502", code)
	}
	startRedis()
	testkit.Eventually(t, 30*time.Second, func() bool { return n.handler(t, "down").Status.State == "running" }, "running again")
	publish("after")
	testkit.Eventually(t, 30*time.Second, func() bool { return ep.okCount() == 2 }, "delivered after the server came back")
	if a := ep.attemptsOf("before"); a != 1 {
		t.Fatalf("the message from before the outage was delivered %d times", a)
	}
}

// TestQueueBadInput: what the API refuses about sources, and says why.
func TestQueueBadInput(t *testing.T) {
	n := startNode(t)
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/v1/topics/t/messages?source=sqs", `{"messages":[{"value":"v"}]}`, "unknown source"},
		{"POST", "/v1/topics/t/messages?source=redis", `{"messages":[{"value":"v","partition":1}]}`, "a redis queue has no partitions"},
		{"POST", "/v1/topics/a.b/messages?source=postgres", `{"messages":[{"value":"v"}]}`, "table name"},
		{"PUT", "/v1/handlers/bad", `{"name":"bad","source":"amqp","topic":"t","ordering":"key","http":{"url":"http://x/"}}`, "must be none with source amqp"},
		{"PUT", "/v1/handlers/bad", `{"name":"bad","source":"kinesis","topic":"t","http":{"url":"http://x/"}}`, "must be kafka, nats, amqp, redis or postgres"},
	} {
		code, body := n.do(t, tc.method, tc.path, tc.body)
		if code != 400 || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s: %d %s, want 400 with %q", tc.method, tc.path, code, body, tc.want)
		}
	}
	if code, body := n.do(t, "GET", "/v1/handlers", ""); code != 200 || strings.Contains(string(body), `"bad"`) {
		t.Fatalf("a refused spec was stored: %s", body)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestQueueBacklogIsTheQueues: per source, with the handler's endpoint
// holding every request, N messages published show as the queue says
// them, the same in the handler's status, the overview (sluice status,
// the dashboard) and /metrics: on nats, N-c waiting and c unacknowledged
// (the durable consumer's max ack pending is the c subscriptions); on
// redis, N between waiting and pending, at least c pending; on amqp, N-c
// ready (one unacknowledged per subscription; RabbitMQ does not say how
// many through AMQP); on postgres, N rows past the group's position (the
// position moves past a row once it is finished). Released, the backlog
// drains to 0.
func TestQueueBacklogIsTheQueues(t *testing.T) {
	n := startNode(t, sluice.WithConfig(sluice.Config{RedeliverAfter: 5 * time.Minute}), sluice.WithSampleInterval(200*time.Millisecond))
	const N, c = 20, 4
	for _, qs := range queueSources {
		t.Run(qs.name, func(t *testing.T) {
			t.Parallel()
			topic := unique("bl_" + qs.name)
			handler := strings.ReplaceAll(topic, "_", "-")
			release := make(chan struct{})
			var held atomic.Int64
			ep := newScripted(t, func(body string, _ int) (int, http.Header, time.Duration) {
				if body == "warm" {
					return 200, nil, 5 * time.Millisecond
				}
				held.Add(1)
				<-release
				held.Add(-1)
				return 200, nil, 0
			})
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})
			n.apply(t, fmt.Sprintf(`{"name":%q,"source":%q,"topic":%q,"http":{"url":%q,"timeout":"5m"},"concurrency":%d,
				"breaker":{"disabled":true}}`, handler, qs.name, topic, ep.URL, c))
			testkit.Eventually(t, 30*time.Second, func() bool { return n.handler(t, handler).Status.State == "running" }, "running")
			// A first message answered in 5ms: the engine runs a message in
			// its fetch loop (inline) while the handler's recent latency is
			// under 50µs, as it is before the first call, and a held request
			// would block the loop there. After one 5ms call it is not.
			if code, body := n.do(t, "POST", "/v1/topics/"+topic+"/messages?source="+qs.name, `{"messages":[{"value":"warm"}]}`); code != 200 {
				t.Fatalf("publish: %d %s", code, body)
			}
			testkit.Eventually(t, 30*time.Second, func() bool { return ep.okCount() == 1 }, "the first message handled")
			var msgs []string
			for i := 0; i < N; i++ {
				msgs = append(msgs, fmt.Sprintf(`{"value":"b-%d"}`, i))
			}
			published := time.Now()
			if code, body := n.do(t, "POST", "/v1/topics/"+topic+"/messages?source="+qs.name, `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
				t.Fatalf("publish: %d %s", code, body)
			}
			// NATS gives the durable's c unacknowledged messages to the c
			// subscriptions of the queue group as it likes: two can go to
			// one subscription, and the second waits behind the first (held)
			// in that subscription; so on nats at least one is held, and
			// the server's counts below are the exact check.
			wantHeld := int64(c)
			if qs.name == "nats" {
				wantHeld = 1
			}
			testkit.Eventually(t, 90*time.Second, func() bool { return held.Load() >= wantHeld },
				"%d requests held by the endpoint (held %v; handler %v)", wantHeld,
				lazyText{func() string { return fmt.Sprint(held.Load()) }},
				lazyText{func() string { return fmt.Sprintf("%+v", n.handler(t, handler).Status) }})

			// want is what the queue should say with c messages in hand.
			want := func(lag, unacked int64) bool {
				switch qs.name {
				case "nats":
					// The durable holds at most c unacknowledged; how many of
					// them the engine has in hand depends on the server's
					// spread over the subscriptions (above).
					return lag+unacked == N && unacked >= 1 && unacked <= c
				case "redis":
					return lag+unacked == N && unacked >= c
				case "amqp":
					return lag == N-c && unacked == -1
				default: // postgres
					return lag == N && unacked == -1
				}
			}
			var st, ov, mw, mu string
			testkit.Eventually(t, 90*time.Second, func() bool {
				h := n.handler(t, handler).Status
				st = fmt.Sprintf("status lag %d unacked %d", h.Lag, h.Unacked)
				if h.Source != qs.name || !want(h.Lag, h.Unacked) {
					return false
				}
				var o api.Overview
				_, body := n.do(t, "GET", "/v1/overview", "")
				if err := json.Unmarshal(body, &o); err != nil {
					t.Fatal(err)
				}
				for _, r := range o.Handlers {
					if r.Name == handler {
						ov = fmt.Sprintf("overview source %s lag %d unacked %d", r.Source, r.Lag, r.Unacked)
						if r.Source != qs.name || !want(r.Lag, r.Unacked) {
							return false
						}
					}
				}
				text := scrape(t, n.base)
				w, okw := metricValue(text, "sluice_queue_backlog", map[string]string{"sluice_handler": handler, "sluice_backlog_state": "waiting"})
				u, oku := metricValue(text, "sluice_queue_backlog", map[string]string{"sluice_handler": handler, "sluice_backlog_state": "unacked"})
				mw, mu = fmt.Sprintf("metric waiting %v (%v)", w, okw), fmt.Sprintf("unacked %v (%v)", u, oku)
				if !oku {
					u = -1
				}
				return okw && want(int64(w), int64(u)) && held.Load() >= wantHeld
			}, "the backlog of %d messages with %d in hand (last read: %v)", N, c, lazyText{func() string { return st + "; " + ov + "; " + mw + " " + mu }})
			t.Logf("%s backlog with %d of %d in hand: %s; %s; %s %s", qs.name, c, N, st, ov, mw, mu)

			// The oldest message not finished is one of those in hand,
			// published with the rest: its age grows past a second, in the
			// status and the metric alike, and never exceeds the time since
			// the publish. RabbitMQ cannot say (a queue cannot be read
			// without taking messages): 0.
			var age, metricAge float64
			testkit.Eventually(t, 60*time.Second, func() bool {
				age = n.handler(t, handler).Status.OldestAgeSeconds
				metricAge, _ = metricValue(scrape(t, n.base), "sluice_consumer_oldest_message_age_seconds", map[string]string{"sluice_handler": handler})
				if qs.name == "amqp" {
					return age == 0 && metricAge == 0 && time.Since(published) > 2*time.Second
				}
				return age >= 1 && metricAge >= 1
			}, "the oldest message's age (status %v, metric %v)", lazyText{func() string { return fmt.Sprint(age) }}, lazyText{func() string { return fmt.Sprint(metricAge) }})
			if limit := time.Since(published).Seconds() + 1; age > limit || metricAge > limit {
				t.Fatalf("oldest age %v (metric %v), more than the %vs since the messages were published", age, metricAge, limit)
			}
			t.Logf("%s: oldest message age %.1fs (metric %.1fs) with %d in hand", qs.name, age, metricAge, c)

			close(release)
			testkit.Eventually(t, 60*time.Second, func() bool { return ep.okCount() == N+1 }, "all %d handled", N+1)
			testkit.Eventually(t, 30*time.Second, func() bool {
				h := n.handler(t, handler).Status
				if h.Lag != 0 || h.Unacked > 0 {
					return false
				}
				text := scrape(t, n.base)
				w, okw := metricValue(text, "sluice_queue_backlog", map[string]string{"sluice_handler": handler, "sluice_backlog_state": "waiting"})
				u, _ := metricValue(text, "sluice_queue_backlog", map[string]string{"sluice_handler": handler, "sluice_backlog_state": "unacked"})
				a, _ := metricValue(text, "sluice_consumer_oldest_message_age_seconds", map[string]string{"sluice_handler": handler})
				return okw && w == 0 && u == 0 && a == 0 && h.OldestAgeSeconds == 0
			}, "the backlog drained to 0, and the oldest age with it")
		})
	}
}

// TestPostgresGroupHasOneOwnerAndMovesOnAStop: two nodes run the same
// postgres handler (the same group): while both run, every message goes
// to one of them (the group's owner, by advisory lock); when the owner
// stops, the other takes the group over at its stored position and
// delivers the rest. Nothing is lost; the stop is a drain, so nothing
// finished is delivered again.
func TestPostgresGroupHasOneOwnerAndMovesOnAStop(t *testing.T) {
	a, b := startNode(t), startNode(t)
	topic := unique("own_pg")
	handler := strings.ReplaceAll(topic, "_", "-")
	slow := func(string, int) (int, http.Header, time.Duration) { return 200, nil, 5 * time.Millisecond }
	epA, epB := newScripted(t, slow), newScripted(t, slow)
	spec := `{"name":%q,"source":"postgres","topic":%q,"http":{"url":%q},"concurrency":4}`
	a.apply(t, fmt.Sprintf(spec, handler, topic, epA.URL))
	testkit.Eventually(t, 30*time.Second, func() bool { return a.handler(t, handler).Status.State == "running" }, "running on a")
	b.apply(t, fmt.Sprintf(spec, handler, topic, epB.URL))
	const total = 600
	publish := func(via *node, from, to int) {
		var msgs []string
		for i := from; i < to; i++ {
			msgs = append(msgs, fmt.Sprintf(`{"value":"p-%d"}`, i))
		}
		if code, body := via.do(t, "POST", "/v1/topics/"+topic+"/messages?source=postgres", `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	publish(a, 0, total/2)
	testkit.Eventually(t, 60*time.Second, func() bool { return epA.okCount()+epB.okCount() >= 100 }, "100 delivered")
	owner, other, ownerNode, otherNode := epA, epB, a, b
	if epB.okCount() > 0 {
		owner, other, ownerNode, otherNode = epB, epA, b, a
	}
	if owner.okCount() == 0 || other.okCount() != 0 {
		t.Fatalf("while both run, a has %d and b %d: want one owner", epA.okCount(), epB.okCount())
	}
	ownerNode.stop()
	before := owner.okCount()
	publish(otherNode, total/2, total)
	for deadline := time.Now().Add(90 * time.Second); owner.okCount()+other.okCount() != total; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			// It stalled once in a full make test (not alone): say where.
			h := otherNode.handler(t, handler)
			t.Logf("the remaining node's handler: %+v", h.Status)
			t.Logf("advisory locks and long transactions on the server:\n%s", pgDiagnostics(t))
			t.Fatalf("timed out after 90s waiting for all %d delivered: %d by the first owner, %d by the next", total, owner.okCount(), other.okCount())
		}
	}
	dups := 0
	for i := 0; i < total; i++ {
		v := fmt.Sprintf("p-%d", i)
		n := epA.attemptsOf(v) + epB.attemptsOf(v)
		if n == 0 {
			t.Fatalf("%s never delivered", v)
		}
		dups += n - 1
	}
	t.Logf("postgres takeover: %d of %d by the first owner before its stop, %d by the next, %d delivered twice", before, total, other.okCount(), dups)
	if dups != 0 {
		t.Fatalf("%d messages delivered twice after a clean stop", dups)
	}
}

// TestQueueCleanStopHandsTheRestToTheOtherNode: per Watermill source, two
// nodes run the same handler; one stops mid-stream (a drain); the other
// delivers the rest, and nothing finished is delivered again. Then the
// remaining node's handler is paused and resumed: nothing is delivered
// again either. On NATS the durable consumer is Sluice's: before, the
// stopping node's unsubscribe deleted it (nats.go deletes a consumer it
// created), which stalled the other node and made a restart deliver the
// whole stream again. On Redis a message acknowledged as the session ends
// can be delivered again (docs/queues.md, the XACK at a session's end):
// at most the handler's concurrency.
func TestQueueCleanStopHandsTheRestToTheOtherNode(t *testing.T) {
	const total, concurrency = 1000, 8
	for _, src := range []string{"nats", "amqp", "redis"} {
		t.Run(src, func(t *testing.T) {
			t.Parallel()
			cfg := sluice.WithConfig(sluice.Config{RedeliverAfter: 3 * time.Second})
			a, b := startNode(t, cfg), startNode(t, cfg)
			topic := unique("stop_" + src)
			handler := strings.ReplaceAll(topic, "_", "-")
			slow := func(string, int) (int, http.Header, time.Duration) { return 200, nil, 5 * time.Millisecond }
			epA, epB := newScripted(t, slow), newScripted(t, slow)
			spec := `{"name":%q,"source":%q,"topic":%q,"http":{"url":%q},"concurrency":%d}`
			a.apply(t, fmt.Sprintf(spec, handler, src, topic, epA.URL, concurrency))
			b.apply(t, fmt.Sprintf(spec, handler, src, topic, epB.URL, concurrency))
			testkit.Eventually(t, 30*time.Second, func() bool {
				return a.handler(t, handler).Status.State == "running" && b.handler(t, handler).Status.State == "running"
			}, "running on both")
			var msgs []string
			for i := 0; i < total; i++ {
				msgs = append(msgs, fmt.Sprintf(`{"value":"s-%d"}`, i))
			}
			if code, body := b.do(t, "POST", "/v1/topics/"+topic+"/messages?source="+src, `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
				t.Fatalf("publish: %d %s", code, body)
			}
			testkit.Eventually(t, 60*time.Second, func() bool { return epA.okCount() >= 100 }, "100 delivered on the node to stop")
			a.stop()
			delivered := func() (distinct, dups int) {
				for i := 0; i < total; i++ {
					if n := epA.attemptsOf(fmt.Sprintf("s-%d", i)) + epB.attemptsOf(fmt.Sprintf("s-%d", i)); n > 0 {
						distinct++
						dups += n - 1
					}
				}
				return distinct, dups
			}
			testkit.Eventually(t, 90*time.Second, func() bool { d, _ := delivered(); return d == total }, "all %d delivered", total)
			// Past --redeliver-after, so that anything left unacknowledged
			// has come again.
			time.Sleep(5 * time.Second)
			_, dups := delivered()
			if code, body := b.do(t, "POST", "/v1/handlers/"+handler+"/pause", ""); code != 200 {
				t.Fatalf("pause: %d %s", code, body)
			}
			if code, body := b.do(t, "POST", "/v1/handlers/"+handler+"/resume", ""); code != 200 {
				t.Fatalf("resume: %d %s", code, body)
			}
			testkit.Eventually(t, 30*time.Second, func() bool { return b.handler(t, handler).Status.State == "running" }, "running again")
			time.Sleep(5 * time.Second)
			_, after := delivered()
			t.Logf("%s clean stop: %d by the stopped node, %d by the other, %d delivered twice; %d more after a pause and resume",
				src, epA.okCount(), epB.okCount(), dups, after-dups)
			if after != dups {
				t.Fatalf("a pause and resume delivered %d messages again", after-dups)
			}
			if limit := map[string]int{"redis": concurrency}[src]; dups > limit {
				t.Fatalf("%d messages delivered twice after a clean stop, want at most %d", dups, limit)
			}
		})
	}
}

// lazyText prints f() when a failure message is formatted, not when it
// is built.
type lazyText struct{ f func() string }

func (l lazyText) String() string { return l.f() }

// pgDiagnostics lists the server's advisory locks and its transactions
// open for over a second: what can hold a postgres group back.
func pgDiagnostics(t *testing.T) string {
	out, err := exec.Command("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc",
		`SELECT 'lock', l.pid, l.granted, a.state, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory'
		 UNION ALL SELECT 'xact', pid, NULL, state, left(query, 120) FROM pg_stat_activity WHERE xact_start < now() - interval '1 second'`).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("psql: %v: %s", err, out)
	}
	return string(out)
}
