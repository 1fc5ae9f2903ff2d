// Package metrics is Sluice's telemetry: one OpenTelemetry meter provider
// with a Prometheus exporter (GET /metrics) and, when the standard
// OTEL_EXPORTER_OTLP_* variables are set, OTLP export of metrics and
// traces; the per-handler instruments; the consumer spans; and the short
// in-memory history the dashboard draws.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry holds a node's providers. Create it with Setup; Shutdown flushes
// and stops the exporters.
type Telemetry struct {
	Meter      metric.Meter
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// MetricsHandler serves the Prometheus exposition.
	MetricsHandler http.Handler
	// Recording reports whether spans are recorded and exported (OTLP is
	// configured); when not, only trace context is propagated.
	Recording bool

	mp    *sdkmetric.MeterProvider
	tp    *sdktrace.TracerProvider
	hists *histProducer
}

// OTLPConfigured reports whether the environment asks for OTLP export of
// signal ("METRICS" or "TRACES").
func OTLPConfigured(signal string) bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// Providers are an embedding program's own OpenTelemetry providers. A nil
// field keeps Sluice's own: a meter provider behind /metrics (and OTLP when
// configured), a tracer provider that exports over OTLP when configured.
type Providers struct {
	// MeterProvider receives every Sluice instrument. /metrics then serves
	// nothing of Sluice's (404): the program exports its metrics its way.
	MeterProvider metric.MeterProvider
	// TracerProvider records Sluice's consumer and producer spans.
	TracerProvider trace.TracerProvider
}

// Setup builds the providers for one node. Each node gets its own registry,
// so several nodes can live in one process (as in tests).
func Setup(ctx context.Context, nodeID string, ext Providers) (*Telemetry, error) {
	t, err := setup(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	if ext.MeterProvider != nil {
		t.Meter = ext.MeterProvider.Meter("github.com/sluicehq/sluice")
		t.MetricsHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "this node's metrics go to its program's own OpenTelemetry meter provider", http.StatusNotFound)
		})
	}
	if ext.TracerProvider != nil {
		t.Tracer = ext.TracerProvider.Tracer("github.com/sluicehq/sluice")
		t.Recording = true
	}
	return t, nil
}

func setup(ctx context.Context, nodeID string) (*Telemetry, error) {
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win.
	res, err := resource.New(ctx, resource.WithAttributes(
		attribute.String("service.name", "sluice"),
		attribute.String("service.instance.id", nodeID),
	), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	hists := newHistProducer()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithProducer(hists))
	if err != nil {
		return nil, err
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(exp)}
	if OTLPConfigured("METRICS") {
		mexp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithProducer(hists))))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)

	// Without an exporter spans are not recorded, but they still carry
	// trace context from the producer to the endpoint.
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.NeverSample())}
	if OTLPConfigured("TRACES") {
		texp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, err
		}
		topts = []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithBatcher(texp),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))}
	}
	tp := sdktrace.NewTracerProvider(topts...)
	return &Telemetry{
		hists:          hists,
		Recording:      OTLPConfigured("TRACES"),
		Meter:          mp.Meter("github.com/sluicehq/sluice"),
		Tracer:         tp.Tracer("github.com/sluicehq/sluice"),
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		mp:             mp,
		tp:             tp,
	}, nil
}

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.mp.Shutdown(ctx), t.tp.Shutdown(ctx))
}
