package metrics

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
)

// Instruments are the per-handler metrics, created once per node. Counters
// and gauges are observed from the runners at collection time, so the hot
// path pays only for the two histograms and the span.
type Instruments struct {
	t        *Telemetry
	sampler  *Sampler
	duration metric.Float64Histogram
	delay    metric.Float64Histogram
	commit   metric.Float64Histogram
	reg      metric.Registration
}

// NewInstruments creates the instruments; targets lists the handlers to
// observe at each collection.
func NewInstruments(t *Telemetry, sampler *Sampler, targets func() []Target) (*Instruments, error) {
	m := t.Meter
	in := &Instruments{t: t, sampler: sampler}
	var err error
	secs := metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
	if in.duration, err = m.Float64Histogram("messaging.process.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of one handler invocation."), secs); err != nil {
		return nil, err
	}
	if in.delay, err = m.Float64Histogram("sluice.message.delay", metric.WithUnit("s"),
		metric.WithDescription("Time from the message's timestamp to the end of its successful handling."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)); err != nil {
		return nil, err
	}
	if in.commit, err = m.Float64Histogram("sluice.commit.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of one offset commit."), secs); err != nil {
		return nil, err
	}
	counter := func(name, desc string) metric.Int64ObservableCounter {
		c, e := m.Int64ObservableCounter(name, metric.WithUnit("{message}"), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = e
		}
		return c
	}
	gauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		g, e := m.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = e
		}
		return g
	}
	received := counter("messaging.client.consumed.messages", "Messages fetched for the handler.")
	succeeded := counter("sluice.messages.succeeded", "Messages the handler finished successfully.")
	failed := counter("sluice.messages.failed", "Failed invocations.")
	retried := counter("sluice.messages.retried", "Retries scheduled after a failed invocation.")
	dead := counter("sluice.messages.dead_lettered", "Messages written to the dead-letter topic.")
	replayed := counter("sluice.messages.replayed", "Messages consumed from the handler's replay topic.")
	rebalances := counter("sluice.rebalances", "Assignments started (one per rebalance).")
	commitFailures := counter("sluice.commit.failures", "Offset commits that failed.")
	inflight := gauge("sluice.inflight", "{message}", "Messages in flight.")
	limit := gauge("sluice.concurrency.limit", "{message}", "The handler's in-flight limit.")
	breaker := gauge("sluice.breaker.state", "{state}", "Circuit breaker: 0 closed, 1 half-open, 2 open.")
	lag := gauge("messaging.kafka.consumer.lag", "{message}", "Log end offset minus the group's committed offset, per partition, measured by Sluice.")
	oldest := gauge("sluice.consumer.oldest_message_age", "s", "Age of the oldest message not yet processed.")
	if err != nil {
		return nil, err
	}
	in.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, tg := range targets() {
			base := handlerAttrs(tg.Spec)
			set := metric.WithAttributeSet(attribute.NewSet(base...))
			if tg.Runner != nil {
				st := tg.Runner.Status()
				o.ObserveInt64(received, int64(st.Received), set)
				o.ObserveInt64(succeeded, int64(st.Succeeded), set)
				o.ObserveInt64(failed, int64(st.Failed), set)
				o.ObserveInt64(retried, int64(st.Retried), set)
				o.ObserveInt64(dead, int64(st.DeadLettered), set)
				o.ObserveInt64(replayed, int64(st.Replayed), set)
				o.ObserveInt64(rebalances, int64(st.Rebalances), set)
				o.ObserveInt64(commitFailures, int64(st.CommitErrs), set)
				o.ObserveFloat64(inflight, float64(st.InFlight), set)
				o.ObserveFloat64(limit, float64(st.Limit), set)
				o.ObserveFloat64(breaker, breakerValue(st.Breaker), set)
			}
			if p, lags, ok := sampler.Latest(tg.Spec.Name); ok {
				o.ObserveFloat64(oldest, p.OldestAgeSeconds, set)
				for topic, parts := range lags {
					for part, l := range parts {
						attrs := append([]attribute.KeyValue{}, base...)
						attrs[1] = attribute.String("messaging.destination.name", topic)
						attrs = append(attrs, attribute.Int("messaging.destination.partition.id", part))
						o.ObserveFloat64(lag, float64(l), metric.WithAttributes(attrs...))
					}
				}
			}
		}
		return nil
	}, received, succeeded, failed, retried, dead, replayed, rebalances, commitFailures, inflight, limit, breaker, lag, oldest)
	if err != nil {
		return nil, err
	}
	return in, nil
}

func breakerValue(b *consumers.BreakerStatus) float64 {
	if b == nil {
		return 0
	}
	switch b.State {
	case "half-open":
		return 1
	case "open":
		return 2
	}
	return 0
}

// handlerAttrs are the attributes every instrument carries; no per-key or
// per-message labels, so cardinality stays bounded by handlers and
// partitions.
func handlerAttrs(spec handlers.Spec) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("sluice.handler", spec.Name),
		attribute.String("messaging.destination.name", spec.Topic),
		attribute.String("messaging.consumer.group.name", spec.Group()),
		attribute.String("messaging.system", "kafka"),
	}
}

// Hooks returns the engine hooks for one handler: a consumer span per
// invocation (child of the trace context the producer put in the message's
// headers, so a retry is a new span under the same parent), the duration
// and delay histograms, and the sampler's latency record.
func (in *Instruments) Hooks(spec handlers.Spec) consumers.Hooks {
	set := attribute.NewSet(handlerAttrs(spec)...)
	okSet := metric.WithAttributeSet(attribute.NewSet(append(handlerAttrs(spec), attribute.String("sluice.outcome", "success"))...))
	errSet := metric.WithAttributeSet(attribute.NewSet(append(handlerAttrs(spec), attribute.String("sluice.outcome", "failure"))...))
	delaySet := metric.WithAttributeSet(set)
	name := "process " + spec.Topic
	group := spec.Group()
	return consumers.Hooks{
		Invoke: func(ctx context.Context, m *handlers.Message) (context.Context, func(error, time.Duration)) {
			parent := in.t.Propagator.Extract(ctx, headerCarrier{m})
			psc := trace.SpanContextFromContext(parent)
			opts := []trace.SpanStartOption{
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.system", "kafka"),
					attribute.String("messaging.operation.type", "process"),
					attribute.String("messaging.destination.name", m.Topic),
					attribute.String("messaging.destination.partition.id", itoa(m.Partition)),
					attribute.Int64("messaging.kafka.offset", m.Offset),
					attribute.String("messaging.consumer.group.name", group),
					attribute.String("messaging.message.id", m.ID()),
					attribute.Int("sluice.attempt", m.Attempt),
				),
			}
			if psc.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: psc}))
			}
			ctx, span := in.t.Tracer.Start(trace.ContextWithRemoteSpanContext(ctx, psc), name, opts...)
			return ctx, func(err error, d time.Duration) {
				secs := d.Seconds()
				if err != nil {
					span.RecordError(err)
					span.SetStatus(codes.Error, err.Error())
					in.duration.Record(ctx, secs, errSet)
				} else {
					in.duration.Record(ctx, secs, okSet)
					if !m.Time.IsZero() {
						in.delay.Record(ctx, time.Since(m.Time).Seconds(), delaySet)
					}
				}
				span.End()
				if in.sampler != nil {
					in.sampler.ObserveLatency(spec.Name, d)
				}
			}
		},
		Commit: func(d time.Duration, err error) {
			in.commit.Record(context.Background(), d.Seconds(), delaySet)
		},
	}
}

// headerCarrier reads trace context from Kafka message headers.
type headerCarrier struct{ m *handlers.Message }

func (h headerCarrier) Get(key string) string {
	v, _ := h.m.Header(key)
	return string(v)
}
func (h headerCarrier) Set(string, string) {}
func (h headerCarrier) Keys() []string {
	keys := make([]string, len(h.m.Headers))
	for i, hd := range h.m.Headers {
		keys[i] = hd.Key
	}
	return keys
}

var _ propagation.TextMapCarrier = headerCarrier{}

func itoa(i int) string {
	if i >= 0 && i < 10 {
		return string(rune('0' + i))
	}
	return attribute.IntValue(i).Emit()
}
