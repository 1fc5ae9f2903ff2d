package metrics

import (
	"context"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The per-message histograms (invocation duration, end-to-end delay) are
// recorded here, lock-free, and handed to the OpenTelemetry readers as an
// external producer at collection time: an SDK histogram Record costs a
// lock and an attribute normalization per message, which the hot path
// cannot afford.

// hist is a cumulative explicit-bucket histogram of seconds.
type hist struct {
	bounds []float64
	counts []atomic.Uint64 // len(bounds)+1, the last for +Inf
	sumNs  atomic.Int64
	count  atomic.Uint64
}

func newHist(bounds []float64) *hist {
	return &hist{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *hist) record(d time.Duration) {
	v := d.Seconds()
	h.counts[sort.SearchFloat64s(h.bounds, v)].Add(1) // first bound >= v: Prometheus's le
	h.sumNs.Add(int64(d))
	h.count.Add(1)
}

// histSeries is one histogram time series: an instrument and attributes.
type histSeries struct {
	name, desc string
	attrs      attribute.Set
	h          *hist
}

// histProducer exports the histograms through every reader.
type histProducer struct {
	start time.Time
	mu    sync.Mutex
	order []string // instrument names, in registration order
	by    map[string][]*histSeries
	keyed map[string]*hist
}

func newHistProducer() *histProducer {
	return &histProducer{start: time.Now(), by: map[string][]*histSeries{}, keyed: map[string]*hist{}}
}

// series returns the histogram of name with attrs, creating it once: a
// handler's series survive its runner's restarts.
func (p *histProducer) series(name, desc string, bounds []float64, attrs attribute.Set) *hist {
	key := name + "\x00" + attrs.Encoded(attribute.DefaultEncoder())
	p.mu.Lock()
	defer p.mu.Unlock()
	if h, ok := p.keyed[key]; ok {
		return h
	}
	h := newHist(bounds)
	p.keyed[key] = h
	if _, ok := p.by[name]; !ok {
		p.order = append(p.order, name)
	}
	p.by[name] = append(p.by[name], &histSeries{name: name, desc: desc, attrs: attrs, h: h})
	return h
}

// Produce implements sdkmetric.Producer.
func (p *histProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	sm := metricdata.ScopeMetrics{Scope: instrumentation.Scope{Name: "github.com/sluicehq/sluice"}}
	for _, name := range p.order {
		ss := p.by[name]
		data := metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality}
		for _, s := range ss {
			counts := make([]uint64, len(s.h.counts))
			for i := range counts {
				counts[i] = s.h.counts[i].Load()
			}
			var total uint64
			for _, c := range counts {
				total += c
			}
			data.DataPoints = append(data.DataPoints, metricdata.HistogramDataPoint[float64]{
				Attributes: s.attrs, StartTime: p.start, Time: now,
				Count: total, Bounds: s.h.bounds, BucketCounts: counts,
				Sum: math.Max(0, float64(s.h.sumNs.Load())/1e9),
			})
		}
		sm.Metrics = append(sm.Metrics, metricdata.Metrics{Name: name, Description: ss[0].desc, Unit: "s", Data: data})
	}
	return []metricdata.ScopeMetrics{sm}, nil
}
