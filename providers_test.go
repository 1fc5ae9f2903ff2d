package sluice_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testkit"
)

// An embedding program's own meter and tracer providers receive Sluice's
// instruments and spans.
func TestEmbedderOwnOTelProviders(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	app, err := sluice.New(sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger()),
		sluice.WithMeterProvider(mp), sluice.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	var count atomic.Int64
	if err := app.Handle(sluice.Spec{Name: "otel", Topic: "otel-topic"}, func(context.Context, *sluice.Message) error {
		count.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n := runNode(t, app)
	testkit.Eventually(t, 20*time.Second, func() bool { code, _ := n.do(t, "GET", "/v1/handlers/otel", ""); return code == 200 }, "handler registered")
	var msgs []string
	for i := 0; i < 20; i++ {
		msgs = append(msgs, fmt.Sprintf(`{"value":"v%d"}`, i))
	}
	if code, body := n.do(t, "POST", "/v1/topics/otel-topic/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return count.Load() >= 20 }, "20 deliveries")
	succeeded := func() int64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "sluice.messages.succeeded" {
					var total int64
					for _, dp := range s.DataPoints {
						total += dp.Value
					}
					return total
				}
			}
		}
		return 0
	}
	testkit.Eventually(t, 20*time.Second, func() bool { return succeeded() == 20 }, "sluice.messages.succeeded = 20 in the program's meter provider (last %d)", succeeded())
	consumerSpans := 0
	for _, s := range spans.Ended() {
		if strings.HasPrefix(s.Name(), "process") || s.SpanKind().String() == "consumer" {
			consumerSpans++
		}
	}
	if consumerSpans < 20 {
		t.Fatalf("%d consumer spans in the program's tracer provider, want at least 20", consumerSpans)
	}
	if code, _ := n.do(t, "GET", "/metrics", ""); code != 404 {
		t.Fatalf("/metrics: HTTP %d, want 404 (the metrics go to the program's provider)", code)
	}
}
