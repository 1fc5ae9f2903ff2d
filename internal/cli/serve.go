package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/node"
)

func newServeCmd(env Env) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a Sluice node (with an embedded Kafka broker unless --brokers is set)",
		Long: `Run a Sluice node: the API, and a consumer for every registered handler.

With no --brokers, the node starts an embedded Kafka-protocol broker that keeps
its data in --data-dir and listens on --kafka-addr for any Kafka client.
With --brokers, it uses that Kafka cluster; run as many nodes as you like and
they share each handler's partitions.

Every setting is a key of the --config file, a SLUICE_* variable and a flag
(kafka.sasl.mechanism, SLUICE_KAFKA_SASL_MECHANISM, --kafka-sasl-mechanism);
flags win over the environment, which wins over the file, which wins over the
defaults. See docs/configuration.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := serveConfig(cmd.Flags(), env, configPath)
			if err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			log, err := newLogger(env, cfg.Log.Format, cfg.Log.Level)
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
	addServeFlags(cmd.Flags(), env, &configPath)
	return cmd
}

// addServeFlags defines the flags of serve (and config print): one per
// config key. A flag's value is applied only when it is given, over the
// environment and the file (serveConfig).
func addServeFlags(f *pflag.FlagSet, env Env, configPath *string) {
	d := sluice.DefaultConfig()
	var cfg sluice.Config // the flags' storage; serveConfig reads what was given
	f.StringVar(configPath, "config", env.Getenv("SLUICE_CONFIG"), "a YAML config file (env SLUICE_CONFIG); see docs/configuration.md")
	f.String("brokers", "", "comma-separated Kafka bootstrap addresses; empty starts the embedded broker")
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
	f.StringVar(&cfg.Log.Format, "log-format", d.Log.Format, "log format: text or json")
	f.StringVar(&cfg.Log.Level, "log-level", d.Log.Level, "log level: debug, info, warn or error")
	f.BoolVar(&cfg.Insecure, "insecure", false, "let the API listen on a non-loopback address without tokens (logged as a warning)")
	// The other keys get a flag of their type, named after the key.
	for _, k := range node.Keys() {
		if k.Flag == "" || f.Lookup(k.Flag) != nil {
			continue
		}
		usage := keyUsage[k.Path]
		if usage == "" {
			usage = k.Path + " (see docs/configuration.md)"
		}
		switch def := k.Default(d).(type) {
		case time.Duration:
			f.Duration(k.Flag, def, usage)
		case int:
			f.Int(k.Flag, def, usage)
		case int64:
			f.Int64(k.Flag, def, usage)
		case bool:
			f.Bool(k.Flag, def, usage)
		case string:
			f.String(k.Flag, def, usage)
		default:
			f.String(k.Flag, fmt.Sprint(def), usage)
		}
	}
}

// keyUsage is the help of the flags made from config keys.
var keyUsage = map[string]string{
	"sampleInterval":            "how often handlers' rates, latencies, lag and desired fleet size are sampled",
	"scalerAddr":                "where KEDA's external-scaler gRPC service listens (with reflection); empty: not served",
	"natsURL":                   "NATS server (JetStream) of handlers with source nats",
	"amqpURL":                   "RabbitMQ server of handlers with source amqp",
	"redisURL":                  "Redis server of handlers with source redis",
	"postgresURL":               "PostgreSQL database of handlers with source postgres",
	"redeliverAfter":            "how long nats and redis wait for an acknowledgement before redelivering to another consumer",
	"heartbeatInterval":         "how often a node checks in with each handler's group",
	"rebalanceTimeout":          "how long a group waits for members in a rebalance (0: drain + grace + final commit + 5s)",
	"fetch.maxBytes":            "the most bytes one fetch reads from a partition",
	"fetch.maxWait":             "the longest a fetch waits for new data",
	"fetch.prefetchMessages":    "messages each partition reader buffers ahead",
	"api.tls.certFile":          "serve the API over HTTPS with this certificate (PEM)",
	"api.tls.keyFile":           "the key of --api-tls-cert-file (PEM)",
	"api.tokensFile":            "a YAML file listing API tokens ({name, role, token | tokenSHA256})",
	"api.metrics":               "/metrics access: open, or token (any valid token)",
	"api.allowedHosts":          "comma-separated host names the API answers to besides IPs and localhost (name, *.domain, or *)",
	"kafka.tls.enabled":         "use TLS to --brokers, trusting the system's CAs unless --kafka-tls-ca-file",
	"kafka.tls.caFile":          "the CAs (PEM) that sign the brokers' certificates",
	"kafka.tls.certFile":        "client certificate (PEM) for mTLS to --brokers",
	"kafka.tls.keyFile":         "the key of --kafka-tls-cert-file (PEM)",
	"kafka.tls.serverName":      "the name the brokers' certificates must carry",
	"kafka.sasl.mechanism":      "SASL to --brokers: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
	"kafka.sasl.username":       "SASL user name",
	"kafka.sasl.password":       "SASL password (prefer --kafka-sasl-password-ref or the environment: flags show in ps)",
	"kafka.sasl.passwordRef":    "where to read the SASL password: env:NAME or file:PATH",
	"embedded.syncWrites":       "the embedded broker fsyncs every produced batch before acknowledging it",
	"embedded.sasl.mechanism":   "SASL the embedded broker requires: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
	"embedded.sasl.username":    "the embedded broker's SASL user",
	"embedded.sasl.password":    "the embedded broker's SASL password (prefer the -ref form or the environment)",
	"embedded.sasl.passwordRef": "where to read the embedded broker's SASL password: env:NAME or file:PATH",
	"embedded.tls.certFile":     "the embedded broker speaks only TLS, with this certificate (PEM)",
	"embedded.tls.keyFile":      "the key of --embedded-tls-cert-file (PEM)",
}

// serveConfig layers the configuration: defaults, then the file, then the
// SLUICE_* variables, then the flags that were given.
func serveConfig(f *pflag.FlagSet, env Env, configPath string) (sluice.Config, error) {
	cfg := sluice.DefaultConfig()
	if configPath != "" {
		if err := node.LoadFile(configPath, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := node.ApplyEnv(&cfg, env.Getenv); err != nil {
		return cfg, err
	}
	var err error
	f.Visit(func(fl *pflag.Flag) {
		if err != nil || fl.Name == "config" {
			return
		}
		k, ok := node.KeyByFlag(fl.Name)
		if !ok {
			err = fmt.Errorf("--%s: no config key has this flag", fl.Name)
			return
		}
		if e := k.Set(&cfg, fl.Value.String()); e != nil {
			err = fmt.Errorf("--%s: %w", fl.Name, e)
		}
	})
	if err != nil {
		return cfg, err
	}
	// A zero here was written somewhere: say so rather than quietly using
	// the default.
	if err := cfg.Validate(); err != nil {
		return cfg, &node.ValidationError{Err: err}
	}
	return cfg, nil
}

func newConfigCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show a node's configuration"}
	var configPath string
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration of serve (file, environment and flags), secrets shown as (set)",
		Long: `Print the configuration that 'sluice serve' would run with, given the same
--config file, SLUICE_* variables and flags, as the YAML of a config file.
Secrets (tokens, passwords) are shown as (set). An invalid configuration is
printed, then refused with the key at fault.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := serveConfig(cmd.Flags(), env, configPath)
			var verr *node.ValidationError
			if err != nil && !errors.As(err, &verr) {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			out, perr := node.Print(cfg)
			if perr != nil {
				return perr
			}
			_, _ = env.Stdout.Write(out)
			if err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			return nil
		},
	}
	addServeFlags(print.Flags(), env, &configPath)
	cmd.AddCommand(print)
	return cmd
}

func newLogger(env Env, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log.format: %q is not text or json", format)
}
