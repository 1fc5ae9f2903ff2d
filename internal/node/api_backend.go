package node

// api_backend.go is what the node serves through the API (api.Backend):
// handlers and their state, publishing, topics, health, dead letters, the
// overview, series, partitions and the fleet; and the conversions from the
// node's parts' types to the API's wire types.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/dlq"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/queues"
	"github.com/sluicehq/sluice/registry"
	"github.com/sluicehq/sluice/topics"
)

// The Node serves the API.
var _ api.Backend = (*Node)(nil)

func (n *Node) view(ctx context.Context, e registry.Entry) api.Handler {
	h := api.Handler{Name: e.Spec.Name, Spec: e.Spec.Redacted(), Paused: e.Paused, Version: e.Version, UpdatedAt: e.UpdatedAt}
	st := &api.HandlerStatus{}
	state, rs := n.handlerState(e.Spec, e.Paused)
	st.State = state
	if rs != nil {
		st.RunnerStatus = runnerStatus(*rs)
	}
	if state == "unavailable" {
		st.LastError = "no Go function named " + e.Spec.Name + " is compiled into this node"
	}
	if err := n.sup.refusal(e.Spec.Name); err != nil && !e.Paused {
		st.LastError = err.Error() + " (this node refuses every invocation; the messages are dead-lettered)"
	}
	if st.Partitions == nil {
		st.Partitions = []api.PartitionStatus{}
	}
	st.Source = string(e.Spec.SourceKind())
	if e.Spec.Source.IsQueue() {
		b := n.backlog(ctx, e.Spec)
		st.Lag, st.Unacked = b.Waiting, b.Unacked
		if !b.Oldest.IsZero() {
			st.OldestAgeSeconds = max(0, time.Since(b.Oldest).Seconds())
		}
	} else {
		st.Lag = n.lag(ctx, e.Spec)
	}
	if p, _, ok := n.sampler.Latest(e.Spec.Name); ok && !e.Spec.Source.IsQueue() {
		st.OldestAgeSeconds = p.OldestAgeSeconds
	}
	h.Status = st
	return h
}

// handlerState is what this node says of a handler, for every view of it:
// paused; unavailable (a Go handler not compiled into this node); starting
// (no runner yet); or its runner's state, with the runner's status.
func (n *Node) handlerState(spec handlers.Spec, paused bool) (string, *consumers.Status) {
	r := n.sup.runner(spec.Name)
	switch {
	case paused:
		return "paused", nil
	case r != nil:
		st := r.Status()
		return st.State, &st
	case spec.Go != nil:
		return "unavailable", nil
	}
	return "starting", nil
}

// lag is the group's backlog on the handler's topic over every partition,
// whoever owns them (see topics.Client.GroupLag); -1 when the broker does
// not answer.
func (n *Node) lag(ctx context.Context, spec handlers.Spec) int64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	parts, err := n.tc.GroupLag(ctx, spec.Group(), spec.Topic, spec.StartFrom == handlers.StartLatest)
	if err != nil {
		return -1
	}
	var lag int64
	for _, p := range parts {
		lag += p.Lag
	}
	return lag
}

// backlog is a queue handler's backlog; -1s when the queue does not
// answer.
func (n *Node) backlog(ctx context.Context, spec handlers.Spec) queues.Backlog {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := n.queues.Backlog(ctx, spec)
	if err != nil {
		return queues.Backlog{Waiting: -1, Unacked: -1}
	}
	return b
}

// ListHandlers implements api.Backend.
func (n *Node) ListHandlers(ctx context.Context) ([]api.Handler, error) {
	if err := n.notReady(); err != nil {
		return nil, err
	}
	es := n.reg.List()
	out := make([]api.Handler, len(es))
	for i, e := range es {
		out[i] = n.view(ctx, e)
	}
	return out, nil
}

// GetHandler implements api.Backend.
func (n *Node) GetHandler(ctx context.Context, name string) (api.Handler, error) {
	e, ok := n.reg.Get(name)
	if !ok {
		return api.Handler{}, fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	return n.view(ctx, e), nil
}

// ApplyHandler implements api.Backend.
func (n *Node) ApplyHandler(ctx context.Context, spec handlers.Spec, ifVersion int64) (api.Handler, bool, error) {
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return api.Handler{}, false, err
	}
	if err := n.policy.CheckSpec(ctx, &spec); err != nil {
		return api.Handler{}, false, err
	}
	if spec.Go != nil {
		g, ok := n.funcs[spec.Name]
		if !ok {
			return api.Handler{}, false, &handlers.FieldError{Field: "go",
				Msg: fmt.Sprintf("no Go function named %q is compiled into this node", spec.Name)}
		}
		if _, batch := g.fn.(handlers.BatchInvoker); spec.Batch != nil && !batch {
			return api.Handler{}, false, &handlers.FieldError{Field: "batch",
				Msg: fmt.Sprintf("the Go function %q takes one message at a time (it was registered with Handle, not HandleBatch)", spec.Name)}
		}
	}
	if err := n.notReady(); err != nil {
		return api.Handler{}, false, err
	}
	// One change to the registry at a time on this node, so that the
	// version checked below is the one written over.
	n.regMu.Lock()
	locked := true
	defer func() {
		if locked {
			n.regMu.Unlock()
		}
	}()
	old, exists := n.reg.Get(spec.Name)
	if ifVersion != api.AnyVersion && (!exists || old.Version != ifVersion) {
		now := "does not exist"
		if exists {
			now = fmt.Sprintf("is at version %d", old.Version)
		}
		return api.Handler{}, false, fmt.Errorf("handler %q %s, not version %d: it changed since you read it; get it again, merge your change and re-apply: %w",
			spec.Name, now, ifVersion, api.ErrConflict)
	}
	var stored *handlers.Spec
	if exists {
		stored = &old.Spec
	}
	if err := spec.KeepSecrets(stored); err != nil {
		return api.Handler{}, false, err
	}
	if exists && reflect.DeepEqual(old.Spec, spec) {
		return n.view(ctx, old), false, nil
	}
	if err := n.checkChain(spec); err != nil {
		return api.Handler{}, false, err
	}
	if !exists || old.Spec.StartFrom != spec.StartFrom {
		if err := n.checkTakeover(ctx, spec); err != nil {
			return api.Handler{}, false, err
		}
	}
	if err := n.tc.Ensure(ctx, spec.Topic, 0, nil); err != nil {
		return api.Handler{}, false, fmt.Errorf("creating topic %s: %w", spec.Topic, err)
	}
	if exists && old.Spec.DeadLetter.Topic != spec.DeadLetter.Topic {
		// The entries of the topic it leaves stay reachable with ?topic=.
		if err := n.dlq.RetireTopic(ctx, spec.Name, old.Spec.DeadLetter.Topic); err != nil {
			return api.Handler{}, false, fmt.Errorf("recording the dead-letter topic %s leaves: %w", spec.Name, err)
		}
	}
	e, err := n.reg.Put(ctx, registry.Entry{Spec: spec, Paused: old.Paused})
	n.regMu.Unlock()
	locked = false
	if err != nil {
		return api.Handler{}, false, err
	}
	n.sup.reconcile(ctx)
	return n.view(ctx, e), !exists, nil
}

// DeleteHandler implements api.Backend.
func (n *Node) DeleteHandler(ctx context.Context, name string) error {
	if err := n.notReady(); err != nil {
		return err
	}
	if e, ok := n.reg.Get(name); ok {
		// Its dead letters stay reachable with ?topic= (and replayable
		// into a handler re-created with the name).
		if err := n.dlq.RetireTopic(ctx, name, e.Spec.DeadLetter.Topic); err != nil {
			return fmt.Errorf("recording the dead-letter topic of %s: %w", name, err)
		}
	}
	if err := n.reg.Delete(ctx, name); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
		}
		return err
	}
	n.sup.reconcile(ctx)
	return nil
}

// SetPaused implements api.Backend. It returns once this node has stopped
// (drained and committed) or restarted the handler; other nodes follow as
// they read the registry.
func (n *Node) SetPaused(ctx context.Context, name string, paused bool) (api.Handler, error) {
	if err := n.notReady(); err != nil {
		return api.Handler{}, err
	}
	n.regMu.Lock()
	e, ok := n.reg.Get(name)
	if !ok {
		n.regMu.Unlock()
		return api.Handler{}, fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	if e.Paused == paused {
		n.regMu.Unlock()
	} else {
		e.Paused = paused
		var err error
		e, err = n.reg.Put(ctx, e)
		n.regMu.Unlock()
		if err != nil {
			return api.Handler{}, err
		}
		n.sup.reconcile(ctx)
	}
	return n.view(ctx, e), nil
}

// Publish implements api.Backend.
func (n *Node) Publish(ctx context.Context, source handlers.Source, topic string, recs []api.Record) ([]api.Produced, error) {
	if source.IsQueue() {
		return n.publishQueue(ctx, source, topic, recs)
	}
	trecs := toRecords(recs)
	ctx, span := n.tracePublish(ctx, topic, trecs)
	defer span.End()
	res, err := n.tc.Produce(ctx, topic, trecs)
	if err != nil {
		span.RecordError(err)
		return nil, asAPIError(err)
	}
	return produced(res), nil
}

// publishQueue writes recs to a queue through its Watermill publisher.
func (n *Node) publishQueue(ctx context.Context, source handlers.Source, topic string, recs []api.Record) ([]api.Produced, error) {
	msgs := make([]*message.Message, len(recs))
	out := make([]api.Produced, len(recs))
	for i, r := range recs {
		hs := make([]handlers.Header, len(r.Headers))
		for j, h := range r.Headers {
			hs[j] = handlers.Header{Key: h.Key, Value: h.Value}
		}
		msgs[i] = queues.Encode("", r.Key, r.Value, hs)
		out[i] = api.Produced{Partition: -1, Offset: -1, ID: msgs[i].UUID}
	}
	if err := n.queues.Publish(ctx, source, topic, msgs); err != nil {
		return nil, err // 502: the queue's server failed
	}
	return out, nil
}

// ListTopics implements api.Backend.
func (n *Node) ListTopics(ctx context.Context) ([]api.TopicInfo, error) {
	ts, err := n.tc.List(ctx)
	if err != nil {
		return nil, err
	}
	return topicInfos(ts), nil
}

// CreateTopic implements api.Backend.
func (n *Node) CreateTopic(ctx context.Context, name string, partitions int) error {
	return asAPIError(n.tc.Create(ctx, name, partitions, nil))
}

// Ready implements api.Backend: the registry is loaded and the broker
// answers.
func (n *Node) Ready(ctx context.Context) (bool, map[string]string) {
	checks := map[string]string{}
	ok := true
	if loaded, err := n.reg.Loaded(); !loaded {
		ok = false
		checks["registry"] = "loading"
		if err != nil {
			checks["registry"] = "loading: " + err.Error()
		}
	} else {
		checks["registry"] = "ok"
	}
	if loaded, _ := n.dlq.Loaded(); !loaded {
		ok = false
		checks["deadLetterStates"] = "loading"
	} else {
		checks["deadLetterStates"] = "ok"
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := n.tc.Offsets(pctx, registry.Topic, 1); err != nil {
		ok = false
		checks["broker"] = "unreachable: " + err.Error()
	} else {
		checks["broker"] = "ok"
	}
	return ok, checks
}

func (n *Node) notReady() error {
	if loaded, err := n.reg.Loaded(); !loaded {
		if err != nil {
			return fmt.Errorf("%w: the node is not ready (registry loading: %v)", api.ErrUnavailable, err)
		}
		return fmt.Errorf("%w: the node is not ready: the registry is still loading", api.ErrUnavailable)
	}
	return nil
}

// deadLetterTopics resolves the dead-letter topic that a dead-letter call
// reads: the handler's own when topic is "", else topic if the handler
// used it (its current one, one recorded as retired, or the default
// <name>.dlq, which handlers deleted before retired topics were recorded
// used unless they set another). Only the records of that topic that name
// the handler in their sluice-dlq-handler header are ever shown, so no
// other topic can be read through the dead-letter API. spec is nil when
// there is no such handler (now).
func (n *Node) deadLetterTopics(name, topic string) (dlqTopic string, spec *handlers.Spec, err error) {
	if err := n.notReady(); err != nil {
		return "", nil, err
	}
	if loaded, _ := n.dlq.Loaded(); !loaded {
		return "", nil, fmt.Errorf("%w: the node is not ready: the dead-letter states are still loading", api.ErrUnavailable)
	}
	e, ok := n.reg.Get(name)
	if ok {
		spec = &e.Spec
	}
	if topic == "" {
		if !ok {
			return "", nil, fmt.Errorf("handler %q: %w (the dead letters of a deleted handler are reached with ?topic=; GET /v1/handlers/%s/dlq/topics lists its topics)",
				name, api.ErrNotFound, name)
		}
		return e.Spec.DeadLetter.Topic, spec, nil
	}
	if err := handlers.ValidateName(name); err != nil {
		return "", nil, err
	}
	if err := dlq.CheckTopic(topic); err != nil {
		return "", nil, err
	}
	// The default topics of every source: a deleted handler's source is
	// not known.
	var defaults []string
	for _, src := range handlers.Sources {
		defaults = append(defaults, handlers.DefaultDeadLetterTopic(src, name))
	}
	if ok && topic == e.Spec.DeadLetter.Topic || n.dlq.IsRetired(name, topic) || slices.Contains(defaults, topic) {
		return topic, spec, nil
	}
	known := []string{handlers.DefaultDeadLetterTopic(handlers.SourceKafka, name)}
	if ok {
		known = append(known, handlers.DefaultDeadLetterTopic(e.Spec.Source, name), e.Spec.DeadLetter.Topic)
	}
	for _, r := range n.dlq.RetiredTopics(name) {
		known = append(known, r.Topic)
	}
	slices.Sort(known)
	return "", nil, &handlers.FieldError{Field: "topic",
		Msg: fmt.Sprintf("%q is not a dead-letter topic of handler %q (its dead-letter topics: %s)", topic, name, strings.Join(slices.Compact(known), ", "))}
}

// ListDeadLetters implements api.Backend.
func (n *Node) ListDeadLetters(ctx context.Context, name, topic string, f api.DeadLetterFilter) (api.DeadLetterPage, error) {
	topic, _, err := n.deadLetterTopics(name, topic)
	if err != nil {
		return api.DeadLetterPage{}, err
	}
	p, err := n.dlq.List(ctx, name, topic, dlq.Filter(f))
	if err != nil {
		return api.DeadLetterPage{}, asAPIError(err)
	}
	return deadLetterPage(p), nil
}

// GetDeadLetter implements api.Backend.
func (n *Node) GetDeadLetter(ctx context.Context, name, topic, id string) (api.DeadLetter, error) {
	topic, _, err := n.deadLetterTopics(name, topic)
	if err != nil {
		return api.DeadLetter{}, err
	}
	e, err := n.dlq.Get(ctx, name, topic, id)
	if err != nil {
		return api.DeadLetter{}, asAPIError(err)
	}
	return deadLetter(e), nil
}

// replayer returns what replays entries of dlqTopic into the handler as
// it is now: a handler deleted and re-created gets the old entries on its
// replay topic (or queue).
func (n *Node) replayer(ctx context.Context, name, topic string) (func(context.Context, dlq.Selection, dlq.Progress) (int, error), string, error) {
	topic, spec, err := n.deadLetterTopics(name, topic)
	if err != nil {
		return nil, "", err
	}
	if spec == nil {
		return nil, "", fmt.Errorf("handler %q: %w: re-create it to replay its dead letters into it (listing and purging them need only ?topic=)", name, api.ErrNotFound)
	}
	sp := *spec
	if sp.Source.IsQueue() {
		// Back into the queue the handler reads: only this handler's group
		// reads a queue, so the replay reaches it alone as on Kafka.
		return func(ctx context.Context, sel dlq.Selection, progress dlq.Progress) (int, error) {
			return n.dlq.ReplayVia(ctx, name, topic, func(ctx context.Context, recs []topics.Record) error {
				msgs := make([]*message.Message, len(recs))
				for i, r := range recs {
					hs := make([]handlers.Header, len(r.Headers))
					for j, h := range r.Headers {
						hs[j] = handlers.Header{Key: h.Key, Value: h.Value}
					}
					msgs[i] = queues.Encode("", r.Key, r.Value, hs)
				}
				return n.queues.Publish(ctx, sp.Source, sp.Topic, msgs)
			}, sel, progress)
		}, topic, nil
	}
	replay := sp.ReplayTopic()
	if err := n.tc.Ensure(ctx, replay, 1, nil); err != nil {
		return nil, "", err
	}
	return func(ctx context.Context, sel dlq.Selection, progress dlq.Progress) (int, error) {
		return n.dlq.Replay(ctx, name, topic, replay, sel, progress)
	}, topic, nil
}

// ReplayDeadLetters implements api.Backend.
func (n *Node) ReplayDeadLetters(ctx context.Context, name, topic string, sel api.Selection) (int, error) {
	replay, _, err := n.replayer(ctx, name, topic)
	if err != nil {
		return 0, err
	}
	count, err := replay(ctx, dlq.Selection(sel), nil)
	return count, asAPIError(err)
}

// DiscardDeadLetters implements api.Backend.
func (n *Node) DiscardDeadLetters(ctx context.Context, name, topic string, sel api.Selection) (int, error) {
	topic, _, err := n.deadLetterTopics(name, topic)
	if err != nil {
		return 0, err
	}
	count, err := n.dlq.Discard(ctx, name, topic, dlq.Selection(sel), nil)
	return count, asAPIError(err)
}

// StartDeadLetterJob implements api.Backend. The job runs in this node
// until it ends or the node stops.
func (n *Node) StartDeadLetterJob(ctx context.Context, name, topic, kind string, sel api.Selection) (api.DeadLetterJob, error) {
	if err := dlq.CheckIDs(sel.IDs); err != nil {
		return api.DeadLetterJob{}, asAPIError(err)
	}
	var run func(context.Context, dlq.Selection, dlq.Progress) (int, error)
	switch kind {
	case api.JobReplay:
		var err error
		if run, topic, err = n.replayer(ctx, name, topic); err != nil {
			return api.DeadLetterJob{}, err
		}
	case api.JobPurge:
		var err error
		if topic, _, err = n.deadLetterTopics(name, topic); err != nil {
			return api.DeadLetterJob{}, err
		}
		dt := topic
		run = func(ctx context.Context, sel dlq.Selection, progress dlq.Progress) (int, error) {
			return n.dlq.Discard(ctx, name, dt, sel, progress)
		}
	default:
		return api.DeadLetterJob{}, fmt.Errorf("unknown dead-letter job kind %q", kind)
	}
	s := dlq.Selection(sel)
	job, err := n.jobs.Start(ctx, name, kind, topic, func(ctx context.Context, progress dlq.Progress) (int, error) {
		count, err := run(ctx, s, progress)
		if err != nil {
			n.log.Error("dead-letter job failed", "handler", name, "kind", kind, "topic", topic, "done", count, "err", err)
		} else {
			n.log.Info("dead-letter job done", "handler", name, "kind", kind, "topic", topic, "count", count)
		}
		return count, err
	})
	if err != nil {
		return api.DeadLetterJob{}, asAPIError(err)
	}
	return api.DeadLetterJob(job), nil
}

// GetDeadLetterJob implements api.Backend.
func (n *Node) GetDeadLetterJob(ctx context.Context, name, id string) (api.DeadLetterJob, error) {
	job, err := n.jobs.Get(name, id)
	if err != nil {
		return api.DeadLetterJob{}, asAPIError(err)
	}
	return api.DeadLetterJob(job), nil
}

// ListDeadLetterJobs implements api.Backend.
func (n *Node) ListDeadLetterJobs(ctx context.Context, name string) ([]api.DeadLetterJob, error) {
	jobs := n.jobs.List(name)
	out := make([]api.DeadLetterJob, len(jobs))
	for i, j := range jobs {
		out[i] = api.DeadLetterJob(j)
	}
	return out, nil
}

// DeadLetterTopics implements api.Backend.
func (n *Node) DeadLetterTopics(ctx context.Context, name string) (api.DeadLetterTopics, error) {
	if err := handlers.ValidateName(name); err != nil {
		return api.DeadLetterTopics{}, err
	}
	if err := n.notReady(); err != nil {
		return api.DeadLetterTopics{}, err
	}
	out := api.DeadLetterTopics{Retired: []api.RetiredTopic{}}
	if e, ok := n.reg.Get(name); ok {
		out.Current = e.Spec.DeadLetter.Topic
	}
	for _, r := range n.dlq.RetiredTopics(name) {
		out.Retired = append(out.Retired, api.RetiredTopic(r))
	}
	return out, nil
}

// Overview implements api.Backend.
func (n *Node) Overview(ctx context.Context) api.Overview {
	out := api.Overview{
		Node: api.NodeInfo{ID: n.nodeID, Brokers: n.brokers, Embedded: len(n.cfg.Brokers) == 0,
			StartedAt: n.startedAt, Version: n.Version},
		Handlers: []api.HandlerOverview{},
	}
	for _, t := range n.targets() {
		h := api.HandlerOverview{Name: t.Spec.Name, Source: string(t.Spec.SourceKind()), Topic: t.Spec.Topic, Paused: t.Paused, BreakerState: "closed",
			ConcurrencyLimit: t.Spec.Concurrency.Max}
		if t.Spec.HTTP != nil {
			h.Invoker = handlers.RedactURL(t.Spec.HTTP.URL)
		} else {
			h.Invoker = "go"
		}
		var counts consumers.Status
		n.sup.countersOf(t.Spec.Name).Fill(&counts)
		h.DeadLettered, h.Succeeded, h.Failed = counts.DeadLettered, counts.Succeeded, counts.Failed
		var st *consumers.Status
		h.State, st = n.handlerState(t.Spec, t.Paused)
		if st != nil {
			h.StateSince = st.StateSince
			h.ConcurrencyLimit, h.InFlight = st.Limit, st.InFlight
			if st.Breaker != nil {
				h.BreakerState = st.Breaker.State
			}
		}
		if p, _, ok := n.sampler.Latest(t.Spec.Name); ok {
			h.RateIn, h.RateOut, h.ErrorRate = p.RateIn, p.RateOut, p.ErrorRate
			h.P50Ms, h.P99Ms = p.P50Ms, p.P99Ms
			h.Lag, h.OldestAgeSeconds = p.Lag, p.OldestAgeSeconds
		}
		if t.Spec.Source.IsQueue() {
			// The sampler measures Kafka groups; a queue says its own.
			b := n.backlog(ctx, t.Spec)
			h.Lag, h.Unacked, h.OldestAgeSeconds = b.Waiting, b.Unacked, 0
			if !b.Oldest.IsZero() {
				h.OldestAgeSeconds = max(0, time.Since(b.Oldest).Seconds())
			}
		}
		out.Handlers = append(out.Handlers, h)
	}
	return out
}

// Series implements api.Backend.
func (n *Node) Series(ctx context.Context, name string, d time.Duration) (api.Series, error) {
	if _, ok := n.reg.Get(name); !ok {
		return api.Series{}, fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	return n.sampler.Series(name, d), nil
}

// Partitions implements api.Backend: every partition of the handler's
// topics across the fleet, with its owner from the group's assignment.
func (n *Node) Partitions(ctx context.Context, name string) (api.PartitionList, error) {
	e, ok := n.reg.Get(name)
	if !ok {
		return api.PartitionList{}, fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	spec := e.Spec
	owners, err := n.tc.Owners(ctx, spec.Group())
	if err != nil {
		owners = nil // shown as unassigned; the offsets still help
	}
	pending := map[string]map[int]int{}
	if r := n.sup.runner(name); r != nil {
		for _, p := range r.Status().Partitions {
			if pending[p.Topic] == nil {
				pending[p.Topic] = map[int]int{}
			}
			pending[p.Topic][p.Partition] = p.Pending
		}
	}
	out := api.PartitionList{Partitions: []api.PartitionInfo{}}
	for _, topic := range spec.Topics() {
		parts, err := n.tc.GroupLag(ctx, spec.Group(), topic, topic == spec.Topic && spec.StartFrom == handlers.StartLatest)
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
func (n *Node) tracePublish(ctx context.Context, topic string, recs []topics.Record) (context.Context, trace.Span) {
	ctx, span := n.tel.Tracer.Start(ctx, "publish "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", topic),
			attribute.Int("messaging.batch.message_count", len(recs)),
		))
	carrier := propagation.MapCarrier{}
	n.tel.Propagator.Inject(ctx, carrier)
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

// Fleet implements api.Backend: every member of every handler's consumer
// group, grouped by the node it names in its member data, plus this node.
func (n *Node) Fleet(ctx context.Context) (api.Fleet, error) {
	if err := n.notReady(); err != nil {
		return api.Fleet{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := api.Fleet{Node: n.nodeID, Nodes: []api.FleetNode{}, Groups: []api.FleetGroup{}}
	nodes := map[string]*api.FleetNode{n.nodeID: {ID: n.nodeID, API: n.httpAddr, Version: n.Version, Handlers: []api.FleetHandler{}}}
	for _, e := range n.reg.List() {
		group := e.Spec.Group()
		fg := api.FleetGroup{Handler: e.Spec.Name, Group: group, State: "unknown"}
		if d, reason, ok := n.sampler.Desired(e.Spec.Name); ok {
			fg.DesiredNodes, fg.DesiredReason = d, reason
			out.DesiredNodes = max(out.DesiredNodes, d)
		}
		state, members, err := n.tc.GroupMembers(ctx, group)
		if err != nil {
			fg.Error = err.Error()
			out.Groups = append(out.Groups, fg)
			continue
		}
		fg.State, fg.Members = state, len(members)
		out.Groups = append(out.Groups, fg)
		for _, m := range members {
			var md api.MemberData
			if json.Unmarshal(m.UserData, &md) != nil || md.Node == "" {
				md.Node = m.ClientID // a member that is not a Sluice node
			}
			fn, ok := nodes[md.Node]
			if !ok {
				fn = &api.FleetNode{ID: md.Node, API: md.API, Version: md.Version, Handlers: []api.FleetHandler{}}
				nodes[md.Node] = fn
			}
			fn.Host = m.ClientHost
			fh := api.FleetHandler{Name: e.Spec.Name, Partitions: []string{}}
			topics := make([]string, 0, len(m.Assigned))
			for t := range m.Assigned {
				topics = append(topics, t)
			}
			sort.Strings(topics)
			for _, t := range topics {
				ps := append([]int(nil), m.Assigned[t]...)
				sort.Ints(ps)
				for _, p := range ps {
					fh.Partitions = append(fh.Partitions, t+"/"+strconv.Itoa(p))
				}
			}
			fn.Handlers = append(fn.Handlers, fh)
		}
	}
	for _, fn := range nodes {
		out.Nodes = append(out.Nodes, *fn)
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].ID < out.Nodes[j].ID })
	out.History = n.sampler.FleetHistory(15 * time.Minute)
	return out, nil
}

// wire.go converts the node's parts' types to and from the API's wire types
// (package api owns those, so that the client links no Kafka code).

func runnerStatus(st consumers.Status) api.RunnerStatus {
	out := api.RunnerStatus{
		StateSince: st.StateSince, LastError: st.LastError, InFlight: st.InFlight, InFlightBytes: st.InFlightBytes,
		Held: st.Held, Limit: st.Limit, Received: st.Received, Succeeded: st.Succeeded, Failed: st.Failed,
		Retried: st.Retried, DeadLettered: st.DeadLettered, Parked: st.Parked, Replayed: st.Replayed, Filtered: st.Filtered, Emitted: st.Emitted,
		Commits: st.Commits, CommitErrs: st.CommitErrs, Rebalances: st.Rebalances,
		Partitions: make([]api.PartitionStatus, len(st.Partitions)),
	}
	if b := st.Breaker; b != nil {
		out.Breaker = &api.BreakerStatus{State: b.State, ChangedAt: b.ChangedAt, Opened: b.Opened}
	}
	for i, p := range st.Partitions {
		out.Partitions[i] = api.PartitionStatus(p)
	}
	return out
}

func toRecords(recs []api.Record) []topics.Record {
	out := make([]topics.Record, len(recs))
	for i, r := range recs {
		out[i] = topics.Record{Key: r.Key, Value: r.Value, Partition: r.Partition}
		if len(r.Headers) > 0 {
			out[i].Headers = make([]kafka.Header, len(r.Headers))
			for j, h := range r.Headers {
				out[i].Headers[j] = kafka.Header{Key: h.Key, Value: h.Value}
			}
		}
	}
	return out
}

func produced(ps []topics.Produced) []api.Produced {
	out := make([]api.Produced, len(ps))
	for i, p := range ps {
		out[i] = api.Produced{Partition: p.Partition, Offset: p.Offset}
	}
	return out
}

func topicInfos(is []topics.Info) []api.TopicInfo {
	out := make([]api.TopicInfo, len(is))
	for i, t := range is {
		out[i] = api.TopicInfo(t)
	}
	return out
}

func deadLetter(e dlq.Entry) api.DeadLetter {
	return api.DeadLetter{
		ID: e.ID, Topic: e.Topic, Handler: e.Handler, ReplayOf: e.ReplayOf, Duplicates: e.Duplicates, DuplicateOf: e.DuplicateOf, Key: e.Key, KeyBase64: e.KeyBase64, Error: e.Error, Status: e.Status,
		Attempts: e.Attempts, SourceTopic: e.SourceTopic, SourcePartition: e.SourcePartition, SourceOffset: e.SourceOffset, SourceRef: e.SourceRef,
		FirstFailure: e.FirstFailure, LastFailure: e.LastFailure, State: e.State, StateChangedAt: e.StateChangedAt,
		Value: e.Value, ValueBase64: e.ValueBase64, Headers: e.Headers,
	}
}

func deadLetterPage(p dlq.Page) api.DeadLetterPage {
	out := api.DeadLetterPage{Entries: make([]api.DeadLetter, len(p.Entries)), Total: p.Total, Next: p.Next, DuplicateRecords: p.DuplicateRecords}
	for i, e := range p.Entries {
		out.Entries[i] = deadLetter(e)
	}
	return out
}

// apiError keeps err's text and makes it match the API error kind, so the
// server answers with kind's status.
type apiError struct {
	err  error
	kind error
}

func (e *apiError) Error() string        { return e.err.Error() }
func (e *apiError) Unwrap() error        { return e.err }
func (e *apiError) Is(target error) bool { return target == e.kind }

// asAPIError maps the parts' errors to the API's kinds.
func asAPIError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, topics.ErrTopicExists):
		return &apiError{err, api.ErrTopicExists}
	case errors.Is(err, topics.ErrNoPartition):
		return &apiError{err, api.ErrNoPartition}
	case errors.Is(err, kafka.MessageSizeTooLarge):
		return &apiError{fmt.Errorf("a message is larger than the broker accepts (its message.max.bytes, or the topic's max.message.bytes); messages of the request bound for other partitions may have been written: %w", err), api.ErrTooLarge}
	case errors.Is(err, dlq.ErrNotFound):
		return &apiError{err, api.ErrNotFound}
	case errors.Is(err, dlq.ErrNotDead), errors.Is(err, dlq.ErrJobRunning):
		return &apiError{err, api.ErrConflict}
	case errors.Is(err, dlq.ErrNoJob):
		return &apiError{err, api.ErrNotFound}
	}
	return err
}
