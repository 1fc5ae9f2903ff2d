package cli

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice"
)

func newServeCmd(env Env) *cobra.Command {
	d := sluice.DefaultConfig()
	cfg := d
	var brokers, logFormat, logLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a Sluice node (with an embedded Kafka broker unless --brokers is set)",
		Long: `Run a Sluice node: the API, and a consumer for every registered handler.

With no --brokers, the node starts an embedded Kafka-protocol broker that keeps
its data in --data-dir and listens on --kafka-addr for any Kafka client.
With --brokers, it uses that Kafka cluster; run as many nodes as you like and
they share each handler's partitions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if brokers != "" {
				for _, b := range strings.Split(brokers, ",") {
					if b = strings.TrimSpace(b); b != "" {
						cfg.Brokers = append(cfg.Brokers, b)
					}
				}
			}
			// Flags start at their defaults, so a zero here was typed: say
			// so rather than quietly using the default.
			if err := cfg.Validate(); err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			log, err := newLogger(env, logFormat, logLevel)
			if err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			app, err := sluice.New(sluice.WithConfig(cfg), sluice.WithLogger(log))
			if err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			return app.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&brokers, "brokers", env.Getenv("SLUICE_BROKERS"), "comma-separated Kafka bootstrap addresses; empty starts the embedded broker (env SLUICE_BROKERS)")
	f.StringVar(&cfg.DataDir, "data-dir", d.DataDir, "where the embedded broker keeps its data")
	f.StringVar(&cfg.KafkaAddr, "kafka-addr", d.KafkaAddr, "where the embedded broker listens for Kafka clients")
	f.StringVar(&cfg.HTTPAddr, "http-addr", d.HTTPAddr, "where the API, metrics and dashboard listen")
	f.IntVar(&cfg.Partitions, "partitions", d.Partitions, "partitions of topics created on first use")
	f.IntVar(&cfg.ReplicationFactor, "replication-factor", d.ReplicationFactor, "replication factor of topics Sluice creates (-1: the broker's default)")
	f.DurationVar(&cfg.SessionTimeout, "session-timeout", d.SessionTimeout, "how long a silent node keeps its partitions")
	f.DurationVar(&cfg.CommitInterval, "commit-interval", d.CommitInterval, "how often finished offsets are committed")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", d.DrainTimeout, "how long to wait for in-flight invocations on rebalance or stop")
	f.DurationVar(&cfg.DrainGrace, "drain-grace", d.DrainGrace, "after the drain timeout, how long cancelled invocations get to return before the partitions are released")
	f.DurationVar(&cfg.FinalCommitTimeout, "final-commit-timeout", d.FinalCommitTimeout, "how long the commit that ends an assignment may retry")
	f.Int64Var(&cfg.MaxPublishBytes, "max-publish-bytes", d.MaxPublishBytes, "largest publish request body accepted")
	f.StringVar(&cfg.NATSURL, "nats-url", d.NATSURL, "NATS server (JetStream) of handlers with source nats")
	f.StringVar(&cfg.AMQPURL, "amqp-url", d.AMQPURL, "RabbitMQ server of handlers with source amqp")
	f.StringVar(&cfg.RedisURL, "redis-url", d.RedisURL, "Redis server of handlers with source redis")
	f.StringVar(&cfg.PostgresURL, "postgres-url", d.PostgresURL, "PostgreSQL database of handlers with source postgres")
	f.DurationVar(&cfg.RedeliverAfter, "redeliver-after", d.RedeliverAfter, "how long nats, redis and postgres wait for an acknowledgement before redelivering to another consumer")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func newLogger(env Env, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}
