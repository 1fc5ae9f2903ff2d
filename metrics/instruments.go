package metrics

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
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
	t       *Telemetry
	sampler *Sampler
	commit  metric.Float64Histogram
	reg     metric.Registration
}

var (
	durationBounds = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	delayBounds    = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

const (
	durationName = "messaging.process.duration"
	durationDesc = "Duration of one handler invocation."
	delayName    = "sluice.message.delay"
	delayDesc    = "Time from the message's timestamp to the end of its successful handling."
)

// NewInstruments creates the instruments; targets lists the handlers to
// observe at each collection.
func NewInstruments(t *Telemetry, sampler *Sampler, targets func() []Target) (*Instruments, error) {
	m := t.Meter
	in := &Instruments{t: t, sampler: sampler}
	var err error
	secs := metric.WithExplicitBucketBoundaries(durationBounds...)
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
	filtered := counter("sluice.messages.filtered", "Messages that did not match the handler's filter: committed without an invocation.")
	rebalances := counter("sluice.rebalances", "Assignments started (one per rebalance).")
	commitFailures := counter("sluice.commit.failures", "Offset commits that failed.")
	inflight := gauge("sluice.inflight", "{message}", "Messages in flight.")
	limit := gauge("sluice.concurrency.limit", "{message}", "The handler's in-flight limit.")
	breaker := gauge("sluice.breaker.state", "{state}", "Circuit breaker: 0 closed, 1 half-open, 2 open.")
	lag := gauge("messaging.kafka.consumer.lag", "{message}", "Log end offset minus the group's committed offset, per partition, measured by Sluice.")
	queueBacklog := gauge("sluice.queue.backlog", "{message}",
		"A queue handler's backlog as its queue says it (nats, amqp, redis, postgres): state waiting, not yet delivered to the handler's group; state unacked, delivered and not yet acknowledged. Read by Sluice each sample; a state the queue does not say is not reported.")
	oldest := gauge("sluice.consumer.oldest_message_age", "s", "Age of the oldest message not yet processed.")
	unformed := gauge("sluice.consumer.group.unformed", "s",
		"How long this node's member of the handler's group has been without an assignment (0 while it has one).")
	stalled := gauge("sluice.consumer.group.stalled", "1",
		"1 when the handler's group has not formed for longer than the stall bound (alert on it), else 0.")
	desired := gauge("sluice.desired_nodes", "{node}",
		"How many nodes the fleet needs for the handler: its arrivals and backlog (drained within scaling.maxAge) over the measured per-node rate.")
	fleetDesired := gauge("sluice.fleet.desired_nodes", "{node}", "How many nodes the fleet needs: the most any handler needs. What the KEDA external scaler serves.")
	if err != nil {
		return nil, err
	}
	in.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if d, _, found := sampler.FleetDesired(""); found {
			o.ObserveFloat64(fleetDesired, float64(d))
		}
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
				o.ObserveInt64(filtered, int64(st.Filtered), set)
				o.ObserveInt64(rebalances, int64(st.Rebalances), set)
				o.ObserveInt64(commitFailures, int64(st.CommitErrs), set)
				o.ObserveFloat64(inflight, float64(st.InFlight), set)
				o.ObserveFloat64(limit, float64(st.Limit), set)
				o.ObserveFloat64(breaker, breakerValue(st.Breaker), set)
				var off, stall float64
				switch st.State {
				case consumers.StateStarting, consumers.StateRejoining, consumers.StateStalled:
					off = time.Since(st.StateSince).Seconds()
				}
				if st.State == consumers.StateStalled {
					stall = 1
				}
				o.ObserveFloat64(unformed, off, set)
				o.ObserveFloat64(stalled, stall, set)
			}
			if d, _, ok := sampler.Desired(tg.Spec.Name); ok {
				o.ObserveFloat64(desired, float64(d), set)
			}
			if qb, ok := sampler.Queue(tg.Spec.Name); ok {
				for _, v := range []struct {
					state string
					n     int64
				}{{"waiting", qb.Waiting}, {"unacked", qb.Unacked}} {
					if v.n >= 0 {
						attrs := append(append([]attribute.KeyValue{}, base...), attribute.String("sluice.backlog.state", v.state))
						o.ObserveFloat64(queueBacklog, float64(v.n), metric.WithAttributes(attrs...))
					}
				}
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
	}, received, succeeded, failed, retried, dead, replayed, filtered, rebalances, commitFailures, inflight, limit, breaker, lag, queueBacklog, oldest,
		unformed, stalled, desired, fleetDesired)
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
// messagingSystem is OpenTelemetry's name of a source's system.
func messagingSystem(src handlers.Source) string {
	switch src {
	case handlers.SourceAMQP:
		return "rabbitmq"
	case handlers.SourceNATS:
		return "nats"
	case handlers.SourceRedis:
		return "redis"
	case handlers.SourcePostgres:
		return "postgresql"
	}
	return "kafka"
}

func handlerAttrs(spec handlers.Spec) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("sluice.handler", spec.Name),
		attribute.String("messaging.destination.name", spec.Topic),
		attribute.String("messaging.consumer.group.name", spec.Group()),
		attribute.String("messaging.system", messagingSystem(spec.SourceKind())),
	}
}

// Hooks returns the engine hooks for one handler: the trace context of each
// invocation, and the duration and delay histograms and the sampler's
// latency record.
//
// Tracing costs only what it must. When spans are exported (OTLP
// configured), every invocation gets a consumer span, child of the trace
// context the producer put in the message's headers (so a retry is a new
// span under the same parent). When they are not, a message that carries
// a traceparent gets a child span context (a new span id, nothing
// recorded) that the HTTP invoker passes on, and a message without one
// costs nothing.
func (in *Instruments) Hooks(spec handlers.Spec) consumers.Hooks {
	set := attribute.NewSet(handlerAttrs(spec)...)
	hp := in.t.hists
	okHist := hp.series(durationName, durationDesc, durationBounds, attribute.NewSet(append(handlerAttrs(spec), attribute.String("sluice.outcome", "success"))...))
	errHist := hp.series(durationName, durationDesc, durationBounds, attribute.NewSet(append(handlerAttrs(spec), attribute.String("sluice.outcome", "failure"))...))
	delayHist := hp.series(delayName, delayDesc, delayBounds, set)
	commitSet := metric.WithAttributeSet(set)
	name := "process " + spec.Topic
	group := spec.Group()
	var lat *latencies
	if in.sampler != nil {
		lat = in.sampler.latencies(spec.Name)
	}
	h := consumers.Hooks{
		Done: func(m *handlers.Message, err error, d time.Duration) {
			if err != nil {
				errHist.record(d)
			} else {
				okHist.record(d)
				if !m.Time.IsZero() {
					delayHist.record(time.Since(m.Time))
				}
			}
			if lat != nil {
				lat.observe(d)
			}
		},
		Commit: func(d time.Duration, err error) {
			in.commit.Record(context.Background(), d.Seconds(), commitSet)
		},
	}
	if !in.t.Recording {
		h.Invoke = func(ctx context.Context, m *handlers.Message) (context.Context, func(error)) {
			if _, ok := m.Header("traceparent"); !ok {
				return ctx, nil
			}
			psc := trace.SpanContextFromContext(in.t.Propagator.Extract(ctx, headerCarrier{m}))
			if !psc.IsValid() {
				return ctx, nil
			}
			var sid trace.SpanID
			binary.BigEndian.PutUint64(sid[:], rand.Uint64()|1)
			return trace.ContextWithSpanContext(ctx, psc.WithSpanID(sid).WithRemote(false)), nil
		}
		return h
	}
	h.Invoke = func(ctx context.Context, m *handlers.Message) (context.Context, func(error)) {
		parent := in.t.Propagator.Extract(ctx, headerCarrier{m})
		psc := trace.SpanContextFromContext(parent)
		opts := []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", messagingSystem(spec.SourceKind())),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", m.Topic),
				attribute.String("messaging.destination.partition.id", strconv.Itoa(m.Partition)),
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
		return ctx, func(err error) {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
	}
	return h
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

// InvalidRecordsName counts state records (registry, dead-letter states)
// a node skipped because they were unreadable or invalid.
const InvalidRecordsName = "sluice.state.invalid_records"

// ObserveInvalidRecords reports, for each state topic in counts, how many of
// its records this node skipped as invalid. An invalid record is never run
// or applied; alert on any increase (someone wrote to the topic directly).
func ObserveInvalidRecords(t *Telemetry, counts map[string]func() uint64) error {
	c, err := t.Meter.Int64ObservableCounter(InvalidRecordsName, metric.WithUnit("{record}"),
		metric.WithDescription("State records (handler registry, dead-letter states) skipped as unreadable or invalid."))
	if err != nil {
		return err
	}
	_, err = t.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for topic, n := range counts {
			o.ObserveInt64(c, int64(n()), metric.WithAttributes(attribute.String("messaging.destination.name", topic)))
		}
		return nil
	}, c)
	return err
}
