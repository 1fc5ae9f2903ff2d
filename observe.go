package sluice

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// Version is the build's version, set with -ldflags at release time.
var Version = "dev"

// Overview implements api.Backend.
func (a *App) Overview(ctx context.Context) api.Overview {
	out := api.Overview{
		Node: api.NodeInfo{ID: a.nodeID, Brokers: a.brokers, Embedded: len(a.cfg.Brokers) == 0,
			StartedAt: a.startedAt, Version: Version},
		Handlers: []api.HandlerOverview{},
	}
	for _, t := range a.targets() {
		h := api.HandlerOverview{Name: t.Spec.Name, Topic: t.Spec.Topic, Paused: t.Paused, BreakerState: "closed",
			ConcurrencyLimit: t.Spec.Concurrency.Max}
		if t.Spec.HTTP != nil {
			h.Invoker = t.Spec.HTTP.URL
		} else {
			h.Invoker = "go"
		}
		var counts consumers.Status
		a.sup.countersOf(t.Spec.Name).Fill(&counts)
		h.DeadLettered, h.Succeeded, h.Failed = counts.DeadLettered, counts.Succeeded, counts.Failed
		switch {
		case t.Paused:
			h.State = "paused"
		case t.Runner != nil:
			st := t.Runner.Status()
			h.State, h.StateSince = st.State, st.StateSince
			h.ConcurrencyLimit, h.InFlight = st.Limit, st.InFlight
			if st.Breaker != nil {
				h.BreakerState = st.Breaker.State
			}
		case t.Spec.Go != nil:
			h.State = "unavailable"
		default:
			h.State = "starting"
		}
		if p, _, ok := a.sampler.Latest(t.Spec.Name); ok {
			h.RateIn, h.RateOut, h.ErrorRate = p.RateIn, p.RateOut, p.ErrorRate
			h.P50Ms, h.P99Ms = p.P50Ms, p.P99Ms
			h.Lag, h.OldestAgeSeconds = p.Lag, p.OldestAgeSeconds
		}
		out.Handlers = append(out.Handlers, h)
	}
	return out
}

// Series implements api.Backend.
func (a *App) Series(ctx context.Context, name string, d time.Duration) (api.Series, error) {
	if _, ok := a.reg.Get(name); !ok {
		return api.Series{}, fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	return a.sampler.Series(name, d), nil
}

// Partitions implements api.Backend: every partition of the handler's
// topics across the fleet, with its owner from the group's assignment.
func (a *App) Partitions(ctx context.Context, name string) (api.PartitionList, error) {
	e, ok := a.reg.Get(name)
	if !ok {
		return api.PartitionList{}, fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	spec := e.Spec
	owners, err := a.tc.Owners(ctx, spec.Group())
	if err != nil {
		owners = nil // shown as unassigned; the offsets still help
	}
	pending := map[string]map[int]int{}
	if r := a.sup.runner(name); r != nil {
		for _, p := range r.Status().Partitions {
			if pending[p.Topic] == nil {
				pending[p.Topic] = map[int]int{}
			}
			pending[p.Topic][p.Partition] = p.Pending
		}
	}
	out := api.PartitionList{Partitions: []api.PartitionInfo{}}
	for _, topic := range spec.Topics() {
		parts, err := a.tc.GroupLag(ctx, spec.Group(), topic, topic == spec.Topic && spec.StartFrom == handlers.StartLatest)
		if errors.Is(err, topics.ErrUnknownTopic) {
			continue
		}
		if err != nil {
			return out, err
		}
		for _, p := range parts {
			out.Partitions = append(out.Partitions, api.PartitionInfo{Topic: topic, Partition: p.Partition,
				Owner: owners[topic][p.Partition], Committed: p.Committed, LogStart: p.Start, LogEnd: p.End,
				Lag: p.Lag, Pending: pending[topic][p.Partition]})
		}
	}
	sort.SliceStable(out.Partitions, func(i, j int) bool {
		if out.Partitions[i].Topic != out.Partitions[j].Topic {
			return out.Partitions[i].Topic == spec.Topic
		}
		return out.Partitions[i].Partition < out.Partitions[j].Partition
	})
	return out, nil
}

// tracePublish starts the producer span of a publish and puts its trace
// context in every record that does not carry one already.
func (a *App) tracePublish(ctx context.Context, topic string, recs []topics.Record) (context.Context, trace.Span) {
	ctx, span := a.tel.Tracer.Start(ctx, "publish "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", topic),
			attribute.Int("messaging.batch.message_count", len(recs)),
		))
	carrier := propagation.MapCarrier{}
	a.tel.Propagator.Inject(ctx, carrier)
	for i := range recs {
		if hasHeader(recs[i].Headers, "traceparent") {
			continue
		}
		for k, v := range carrier {
			recs[i].Headers = append(recs[i].Headers, kafka.Header{Key: k, Value: []byte(v)})
		}
	}
	return ctx, span
}

func hasHeader(hs []kafka.Header, key string) bool {
	for _, h := range hs {
		if h.Key == key {
			return true
		}
	}
	return false
}
