package sluice

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/internal/node"
)

// Config is a node's deploy-time configuration. The zero value of each
// field takes the default documented on it (see DefaultConfig).
type Config = node.Config

// The sections of Config; see the node package's documentation of each.
type (
	APIConfig      = node.APIConfig
	Token          = node.Token
	ServerTLS      = node.ServerTLS
	KafkaSecurity  = node.KafkaSecurity
	ClientTLS      = node.ClientTLS
	SASL           = node.SASL
	EmbeddedConfig = node.EmbeddedConfig
	FetchConfig    = node.FetchConfig
	LogConfig      = node.LogConfig
	HandlersConfig = node.HandlersConfig
)

// DefaultConfig returns the node's defaults.
func DefaultConfig() Config { return node.DefaultConfig() }

// Option changes how New builds an App; each overrides the Config field it
// names.
type Option func(*App)

// WithConfig sets every field that is non-zero in c. Options compose in
// order: a later option overrides an earlier one, and WithConfig leaves the
// fields that c does not set as earlier options set them.
func WithConfig(c Config) Option { return func(a *App) { node.Merge(&a.cfg, c, false) } }

// WithBrokers uses an external Kafka cluster instead of the embedded broker.
func WithBrokers(brokers ...string) Option { return func(a *App) { a.cfg.Brokers = brokers } }

// WithDataDir overrides Config.DataDir.
func WithDataDir(dir string) Option { return func(a *App) { a.cfg.DataDir = dir } }

// WithHTTPAddr overrides Config.HTTPAddr.
func WithHTTPAddr(addr string) Option { return func(a *App) { a.cfg.HTTPAddr = addr } }

// WithKafkaAddr overrides Config.KafkaAddr.
func WithKafkaAddr(addr string) Option { return func(a *App) { a.cfg.KafkaAddr = addr } }

// WithSampleInterval overrides Config.SampleInterval.
func WithSampleInterval(d time.Duration) Option { return func(a *App) { a.cfg.SampleInterval = d } }

// WithMeterProvider sends Sluice's metrics to mp instead of its own
// provider; /metrics then answers 404. Default: Sluice's own provider,
// exported on /metrics (and over OTLP when OTEL_EXPORTER_OTLP_* say so).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(a *App) { a.providers.MeterProvider = mp }
}

// WithTracerProvider records Sluice's spans with tp instead of its own
// provider (which exports over OTLP only when OTEL_EXPORTER_OTLP_* say so).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(a *App) { a.providers.TracerProvider = tp }
}

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(a *App) { a.log = l } }
