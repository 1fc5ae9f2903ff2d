// Command sluicebench measures Sluice's consumer against the Go consumers
// people would otherwise write: a plain kafka-go consumer-group Reader loop
// and the Watermill Router over watermill-kafka (Sarama). One run starts one
// embedded broker on 127.0.0.1, fills one topic per scenario family, and
// runs every peer on it, each with a fresh consumer group, one after the
// other, then prints a table and the ratios.
//
// Scenario families:
//
//	noop     a handler that only counts; the consumer's own cost
//	slow     a handler that sleeps 5ms; how well each hides latency
//	http     Sluice alone, invoking a no-op HTTP endpoint in this process,
//	         one message per request and in batches of 100
//	latency  Sluice alone, at a fixed 2,000 msgs/s: the time from publish
//	         to the handler's start
//	adaptive Sluice alone, an HTTP handler with a fixed limit of 512 and
//	         with the adaptive {1, 512}, against an endpoint with no knee
//	         and one that serves 40 at once (adaptive.go)
//	queues   per queue source (nats, amqp, redis, postgres, the local
//	         servers), Sluice with a no-op and a 5ms HTTP handler beside
//	         the plain Watermill Router on the same adapter (queues.go)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/broker"
)

type options struct {
	messages         int
	size             int
	partitions       int
	keys             int
	scenarios        []string
	peers            []string
	concurrency      int
	slowMessages     int
	slowKeys         int
	slowDelay        time.Duration
	slowCap          time.Duration
	httpMessages     int
	adaptiveMessages int
	adaptiveVariants []string
	latencyDur       time.Duration
	timeout          time.Duration
	rounds           int
	cpuProfile       string
	quietWait        time.Duration
	verbose          bool
	queueMessages    int
	queueConcurrency int
	queueDelay       time.Duration
	queueSources     []string
}

var (
	allScenarios = []string{"noop", "slow", "http", "latency", "adaptive", "queues"}
	allPeers     = []string{peerSluiceKey, peerSluiceNone, peerKafkaGo, peerWatermill}
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sluicebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelError
	if opts.verbose {
		level = slog.LevelInfo
	}
	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	dir, err := os.MkdirTemp("", "sluicebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := broker.Start(broker.Config{DataDir: dir, Addr: "127.0.0.1:0", Partitions: opts.partitions, Logger: quiet})
	if err != nil {
		return err
	}
	defer b.Close()

	fmt.Fprintf(stdout, "sluicebench: %s %s/%s, %d CPUs (GOMAXPROCS %d), broker %s (embedded, in this process)\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), strings.Join(b.Addrs(), ","))
	env := &bench{opts: opts, brokers: b.Addrs(), log: quiet, out: stdout}
	var results []result
	for _, sc := range opts.scenarios {
		rs, err := env.scenario(ctx, sc)
		results = append(results, rs...)
		if err != nil {
			report(stdout, opts, results)
			return err
		}
	}
	report(stdout, opts, results)
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("sluicebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var scenarios, peers, qsources string
	fs.IntVar(&o.messages, "messages", 1_000_000, "messages in the noop topic")
	fs.IntVar(&o.size, "size", 100, "bytes per message value")
	fs.IntVar(&o.partitions, "partitions", 12, "partitions per topic")
	fs.IntVar(&o.keys, "keys", 10_000, "distinct keys in the noop topic")
	fs.StringVar(&scenarios, "scenarios", strings.Join(allScenarios, ","), "comma list of scenario families: "+strings.Join(allScenarios, ","))
	fs.StringVar(&peers, "peers", strings.Join(allPeers, ","), "comma list of consumers: "+strings.Join(allPeers, ","))
	fs.IntVar(&o.concurrency, "concurrency", 512, "Sluice handler concurrency")
	fs.IntVar(&o.slowMessages, "slow-messages", 50_000, "messages in the slow topic")
	fs.IntVar(&o.slowKeys, "slow-keys", 1_000, "distinct keys in the slow topic")
	fs.DurationVar(&o.slowDelay, "slow-delay", 5*time.Millisecond, "handler latency in the slow scenario")
	fs.DurationVar(&o.slowCap, "slow-cap", 20*time.Second, "slow scenario: stop a peer after this long and rate what it processed")
	fs.IntVar(&o.httpMessages, "http-messages", 200_000, "messages in the http topic")
	fs.IntVar(&o.adaptiveMessages, "adaptive-messages", 60_000, "messages in the adaptive topic")
	var variants string
	fs.StringVar(&variants, "adaptive-variants", strings.Join(adaptivePeers, ","), "comma list of the adaptive family's variants: "+strings.Join(adaptivePeers, ","))
	fs.DurationVar(&o.latencyDur, "latency-duration", 20*time.Second, "latency scenario: how long to publish and record, after the warm-up")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up on a run after this long and report what it processed")
	fs.IntVar(&o.rounds, "rounds", 1, "runs per peer; the table shows the median")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of each run to `prefix`.<scenario>.<peer>.<round>.pprof")
	fs.DurationVar(&o.quietWait, "quiet-wait", 2*time.Minute, "before each run, wait up to this long for other processes to leave the CPUs idle; 0 does not wait")
	fs.BoolVar(&o.verbose, "v", false, "log at info level (default: errors only)")
	fs.IntVar(&o.queueMessages, "queue-messages", 5_000, "queues scenario: messages per run")
	fs.IntVar(&o.queueConcurrency, "queue-concurrency", 16, "queues scenario: messages at once, Sluice's and the Router's")
	fs.DurationVar(&o.queueDelay, "queue-delay", 5*time.Millisecond, "queues scenario: the slow endpoint's latency")
	fs.StringVar(&qsources, "queue-sources", strings.Join(queueSources, ","), "queues scenario: comma list of sources: "+strings.Join(queueSources, ","))
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.scenarios, err = list(scenarios, allScenarios, "scenarios"); err != nil {
		return o, err
	}
	if o.adaptiveVariants, err = list(variants, adaptivePeers, "adaptive-variants"); err != nil {
		return o, err
	}
	if o.peers, err = list(peers, allPeers, "peers"); err != nil {
		return o, err
	}
	if o.queueSources, err = list(qsources, queueSources, "queue-sources"); err != nil {
		return o, err
	}
	switch {
	case o.messages < 1 || o.slowMessages < 1 || o.httpMessages < 1 || o.adaptiveMessages < 1:
		return o, errors.New("-messages, -slow-messages and -http-messages must be at least 1")
	case o.size < 0:
		return o, errors.New("-size must not be negative")
	case o.partitions < 1:
		return o, errors.New("-partitions must be at least 1")
	case o.keys < 1 || o.slowKeys < 1:
		return o, errors.New("-keys and -slow-keys must be at least 1")
	case o.concurrency < 1 || o.concurrency > 10_000:
		return o, errors.New("-concurrency must be between 1 and 10000")
	case o.queueMessages < 1 || o.queueConcurrency < 1 || o.queueConcurrency > 64:
		return o, errors.New("-queue-messages must be at least 1, -queue-concurrency between 1 and 64")
	case o.rounds < 1:
		return o, errors.New("-rounds must be at least 1")
	case o.timeout <= 0 || o.slowCap <= 0 || o.latencyDur <= 0:
		return o, errors.New("-timeout, -slow-cap and -latency-duration must be positive")
	}
	return o, nil
}

func list(s string, known []string, flagName string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if v == "all" {
			return known, nil
		}
		if !slices.Contains(known, v) {
			return nil, fmt.Errorf("-%s: unknown %q (known: %s)", flagName, v, strings.Join(known, ","))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-%s: empty", flagName)
	}
	return out, nil
}
