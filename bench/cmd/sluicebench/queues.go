package main

import (
	"bytes"
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/queues"
)

// queues.go: the queues family. Per queue source (the local servers on
// their standard ports, queues.Default*URL), four runs on the same server,
// each on a topic of its own filled with -queue-messages messages before
// the clock starts: Sluice with an HTTP handler, against a no-op endpoint
// and one that answers after -queue-delay (5ms); and the plain Watermill
// Router over the same adapter (its default configuration and
// marshalers), whose handler POSTs each message to the same endpoint.
// Both run -queue-concurrency messages at once: Sluice's concurrency; the
// Router's handlers, each with a subscription of its own (on PostgreSQL,
// one: watermill-sql lets one consumer of a group progress at a time).
// A source whose server does not answer is skipped.

const (
	queuePeerSluice     = "sluice"
	queuePeerSluiceSlow = "sluice-5ms"
	queuePeerRouter     = "router"
	queuePeerRouterSlow = "router-5ms"
)

var (
	queuePeers   = []string{queuePeerSluice, queuePeerRouter, queuePeerSluiceSlow, queuePeerRouterSlow}
	queueSources = []string{"nats", "amqp", "redis", "postgres"}
)

func (b *bench) queueRounds(ctx context.Context) ([]result, error) {
	qs := queues.New(queues.Config{Logger: b.log})
	defer qs.Close()
	var out []result
	for _, src := range b.opts.queueSources {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := qs.Ping(pctx, handlers.Source(src))
		cancel()
		if err != nil {
			fmt.Fprintf(b.out, "queues: %s skipped, its server does not answer: %v\n", src, err)
			continue
		}
		for round := 1; round <= b.opts.rounds; round++ {
			for _, kind := range queuePeers {
				if err := ctx.Err(); err != nil {
					return out, err
				}
				topic := fmt.Sprintf("bench_%s_%s_%d_%d", src, strings.ReplaceAll(kind, "-", "_"), round, time.Now().UnixNano()%1_000_000)
				if err := b.fillQueue(ctx, qs, src, topic); err != nil {
					return out, err
				}
				delay := time.Duration(0)
				if strings.HasSuffix(kind, "-5ms") {
					delay = b.opts.queueDelay
				}
				f := family{name: "queue-" + src, topic: topic, messages: b.opts.queueMessages, keys: 1,
					peers: queuePeers, concurrency: b.opts.queueConcurrency, limit: b.opts.timeout}
				peer := kind
				consumers[peer] = func(ctx context.Context, c consumeSpec) error {
					return runQueuePeer(ctx, c, src, delay, strings.HasPrefix(kind, "router"))
				}
				r := b.measure(ctx, f, peer, round)
				fmt.Fprintf(b.out, "  %-14s %-10s round %d: %s\n", f.name, peer, round, r.summary())
				out = append(out, r)
				if err := dropQueue(src, topic); err != nil {
					fmt.Fprintf(b.out, "  (removing %s %s: %v)\n", src, topic, err)
				}
			}
		}
	}
	return out, nil
}

// fillQueue publishes the family's messages through Sluice's publishers
// (what `sluice publish --source` does), 500 at a time.
func (b *bench) fillQueue(ctx context.Context, qs *queues.Queues, src, topic string) error {
	value := make([]byte, b.opts.size)
	start := time.Now()
	for from := 0; from < b.opts.queueMessages; from += 500 {
		to := min(b.opts.queueMessages, from+500)
		msgs := make([]*message.Message, 0, to-from)
		for i := from; i < to; i++ {
			msgs = append(msgs, queues.Encode("", nil, value, nil))
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := qs.Publish(pctx, handlers.Source(src), topic, msgs)
		cancel()
		if err != nil {
			return fmt.Errorf("filling %s %s: %w", src, topic, err)
		}
	}
	d := time.Since(start)
	fmt.Fprintf(b.out, "queue-%s: filled %s with %d x %d-byte messages in %s (%.0f msgs/s)\n",
		src, topic, b.opts.queueMessages, b.opts.size, d.Round(time.Millisecond), float64(b.opts.queueMessages)/d.Seconds())
	return nil
}

// runQueuePeer runs one peer against an endpoint in this process that
// counts each request once it has answered it, after delay.
func runQueuePeer(ctx context.Context, c consumeSpec, src string, delay time.Duration, router bool) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if delay > 0 {
			time.Sleep(delay)
		}
		w.WriteHeader(http.StatusOK)
		c.handleN(1)
	}), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/"

	if router {
		err = runRouter(ctx, c, src, url)
	} else {
		err = runNode(ctx, c, map[string]any{"name": c.name, "source": src, "topic": c.topic, "concurrency": c.concurrency,
			"http": map[string]any{"url": url}}, nil)
	}

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("stopping the endpoint: %w", serr))
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("endpoint: %w", serr))
	}
	return err
}

// runRouter runs the plain Watermill Router until ctx is done: n handlers
// on one subscriber of the source, each POSTing the message to url.
func runRouter(ctx context.Context, c consumeSpec, src, url string) error {
	n := c.concurrency
	if src == "postgres" {
		n = 1
	}
	sub, err := plainSubscriber(ctx, src, c.topic, "bench."+c.name, n)
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, watermill.NopLogger{})
	if err != nil {
		sub.Close()
		return err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	handle := func(m *message.Message) error {
		resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(m.Payload))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	for i := 0; i < n; i++ {
		router.AddNoPublisherHandler(fmt.Sprintf("h%d", i), c.topic, sub, handle)
	}
	// The clock starts as the Router starts subscribing (Sluice's starts
	// before its handler is applied and subscribes).
	c.started()
	err = router.Run(ctx)
	return errors.Join(err, sub.Close())
}

// plainSubscriber is the source's Watermill subscriber in the adapter's
// default configuration (durable, explicit acks), for group.
func plainSubscriber(ctx context.Context, src, topic, group string, n int) (message.Subscriber, error) {
	log := watermill.NopLogger{}
	switch src {
	case "nats":
		nc, err := nats.Connect(queues.DefaultNATSURL)
		if err != nil {
			return nil, err
		}
		durable := strings.NewReplacer(".", "_").Replace(group)
		return wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
			Unmarshaler: &wmnats.NATSMarshaler{}, SubjectCalculator: wmnats.DefaultSubjectCalculator,
			QueueGroupPrefix: durable, SubscribersCount: 1, AckWaitTimeout: time.Minute, CloseTimeout: 5 * time.Second,
			JetStream: wmnats.JetStreamConfig{DurablePrefix: durable, DurableCalculator: func(p, _ string) string { return p },
				SubscribeOptions: []nats.SubOpt{nats.ManualAck(), nats.AckExplicit(), nats.DeliverAll(), nats.MaxAckPending(n)}},
		}, log)
	case "amqp":
		return wmamqp.NewSubscriber(wmamqp.NewDurableQueueConfig(queues.DefaultAMQPURL), log)
	case "redis":
		opts, err := redis.ParseURL(queues.DefaultRedisURL)
		if err != nil {
			return nil, err
		}
		opts.PoolSize = n + 4
		return redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: redis.NewClient(opts), ConsumerGroup: group,
			Consumer: group, OldestId: "0", DisableIndefiniteInitialBlock: true}, log)
	case "postgres":
		db, err := stdsql.Open("pgx", queues.DefaultPostgresURL)
		if err != nil {
			return nil, err
		}
		return wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
			ConsumerGroup: group, PollInterval: 200 * time.Millisecond,
			SchemaAdapter:  wmsql.DefaultPostgreSQLSchema{GeneratePayloadType: func(string) string { return "BYTEA" }},
			OffsetsAdapter: wmsql.DefaultPostgreSQLOffsetsAdapter{}, InitializeSchema: true,
		}, log)
	}
	return nil, fmt.Errorf("unknown source %q", src)
}

// dropQueue removes what a run left on the server.
func dropQueue(src, topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch src {
	case "nats":
		nc, err := nats.Connect(queues.DefaultNATSURL)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			return err
		}
		name, err := js.StreamNameBySubject(topic)
		if err != nil {
			return err
		}
		return js.DeleteStream(name)
	case "amqp":
		conn, err := amqp.Dial(queues.DefaultAMQPURL)
		if err != nil {
			return err
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		_, err = ch.QueueDelete(topic, false, false, false)
		return err
	case "redis":
		opts, err := redis.ParseURL(queues.DefaultRedisURL)
		if err != nil {
			return err
		}
		rc := redis.NewClient(opts)
		defer rc.Close()
		return rc.Del(ctx, topic).Err()
	case "postgres":
		db, err := stdsql.Open("pgx", queues.DefaultPostgresURL)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.ExecContext(ctx, fmt.Sprintf(`DROP TABLE IF EXISTS "watermill_%s", "watermill_offsets_%s"`, topic, topic))
		return err
	}
	return nil
}

// reportQueues prints, per source, one row per peer (the median round by
// wall rate) and Sluice's rate over the Router's, with the no-op and the
// slow endpoint.
func reportQueues(w io.Writer, o options, results []result) {
	for _, src := range o.queueSources {
		fam := "queue-" + src
		rows := map[string]result{}
		for _, p := range queuePeers {
			var rs []result
			for _, r := range results {
				if r.family.name == fam && r.peer == p {
					rs = append(rs, r)
				}
			}
			if len(rs) > 0 {
				rows[p] = median(rs)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n== %s: %d x %d-byte messages per run, %d at once, endpoint no-op or %s\n", fam, o.queueMessages, o.size, o.queueConcurrency, o.queueDelay)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "peer\tmsgs/s\tsteady msgs/s\tto first\tCPU/1,000 msgs\tothers' CPU\t")
		for _, p := range queuePeers {
			r, ok := rows[p]
			if !ok {
				continue
			}
			note := ""
			if r.err != nil {
				note = " (error: " + r.err.Error() + ")"
			} else if r.capped {
				note = " (capped)"
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%.0f%%\t%s\n", p, r.wallRate(), r.steadyRate(), r.toFirst.Round(time.Millisecond),
				r.cpuPerMsg()*1000, 100*r.othersShare(), note)
		}
		_ = tw.Flush()
		for _, pair := range [][2]string{{queuePeerSluice, queuePeerRouter}, {queuePeerSluiceSlow, queuePeerRouterSlow}} {
			a, okA := rows[pair[0]]
			b, okB := rows[pair[1]]
			if okA && okB && b.wallRate() > 0 && b.steadyRate() > 0 {
				fmt.Fprintf(w, "%s / %s: %.2fx (steady %.2fx)\n", pair[0], pair[1], a.wallRate()/b.wallRate(), a.steadyRate()/b.steadyRate())
			}
		}
	}
}
