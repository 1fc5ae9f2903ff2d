package sluice

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dlq"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/registry"
)

// The App serves the API.
var _ api.Backend = (*App)(nil)

func (a *App) view(ctx context.Context, e registry.Entry) api.Handler {
	h := api.Handler{Name: e.Spec.Name, Spec: e.Spec, Paused: e.Paused, Version: e.Version, UpdatedAt: e.UpdatedAt}
	st := &api.HandlerStatus{}
	switch r := a.sup.runner(e.Spec.Name); {
	case e.Paused:
		st.State = "paused"
	case r != nil:
		rs := r.Status()
		st.RunnerStatus = runnerStatus(rs)
		st.State = rs.State
	case e.Spec.Go != nil:
		st.State = "unavailable"
		st.LastError = "no Go function named " + e.Spec.Name + " is compiled into this node"
	default:
		st.State = "starting"
	}
	if st.Partitions == nil {
		st.Partitions = []api.PartitionStatus{}
	}
	st.Lag = a.lag(ctx, e.Spec)
	if p, _, ok := a.sampler.Latest(e.Spec.Name); ok {
		st.OldestAgeSeconds = p.OldestAgeSeconds
	}
	h.Status = st
	return h
}

// lag is the group's backlog on the handler's topic over every partition,
// whoever owns them (see topics.Client.GroupLag); -1 when the broker does
// not answer.
func (a *App) lag(ctx context.Context, spec handlers.Spec) int64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	parts, err := a.tc.GroupLag(ctx, spec.Group(), spec.Topic, spec.StartFrom == handlers.StartLatest)
	if err != nil {
		return -1
	}
	var lag int64
	for _, p := range parts {
		lag += p.Lag
	}
	return lag
}

// ListHandlers implements api.Backend.
func (a *App) ListHandlers(ctx context.Context) ([]api.Handler, error) {
	if err := a.notReady(); err != nil {
		return nil, err
	}
	es := a.reg.List()
	out := make([]api.Handler, len(es))
	for i, e := range es {
		out[i] = a.view(ctx, e)
	}
	return out, nil
}

// GetHandler implements api.Backend.
func (a *App) GetHandler(ctx context.Context, name string) (api.Handler, error) {
	e, ok := a.reg.Get(name)
	if !ok {
		return api.Handler{}, fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	return a.view(ctx, e), nil
}

// ApplyHandler implements api.Backend.
func (a *App) ApplyHandler(ctx context.Context, spec handlers.Spec) (api.Handler, bool, error) {
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return api.Handler{}, false, err
	}
	if spec.Go != nil {
		g, ok := a.funcs[spec.Name]
		if !ok {
			return api.Handler{}, false, &handlers.FieldError{Field: "go",
				Msg: fmt.Sprintf("no Go function named %q is compiled into this node", spec.Name)}
		}
		if _, batch := g.fn.(handlers.BatchInvoker); spec.Batch != nil && !batch {
			return api.Handler{}, false, &handlers.FieldError{Field: "batch",
				Msg: fmt.Sprintf("the Go function %q takes one message at a time (it was registered with Handle, not HandleBatch)", spec.Name)}
		}
	}
	if err := a.notReady(); err != nil {
		return api.Handler{}, false, err
	}
	old, exists := a.reg.Get(spec.Name)
	if exists && reflect.DeepEqual(old.Spec, spec) {
		return a.view(ctx, old), false, nil
	}
	if err := a.tc.Ensure(ctx, spec.Topic, 0, nil); err != nil {
		return api.Handler{}, false, fmt.Errorf("creating topic %s: %w", spec.Topic, err)
	}
	e, err := a.reg.Put(ctx, registry.Entry{Spec: spec, Paused: old.Paused})
	if err != nil {
		return api.Handler{}, false, err
	}
	a.sup.reconcile(ctx)
	return a.view(ctx, e), !exists, nil
}

// DeleteHandler implements api.Backend.
func (a *App) DeleteHandler(ctx context.Context, name string) error {
	if err := a.notReady(); err != nil {
		return err
	}
	if err := a.reg.Delete(ctx, name); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
		}
		return err
	}
	a.sup.reconcile(ctx)
	return nil
}

// SetPaused implements api.Backend. It returns once this node has stopped
// (drained and committed) or restarted the handler; other nodes follow as
// they read the registry.
func (a *App) SetPaused(ctx context.Context, name string, paused bool) (api.Handler, error) {
	if err := a.notReady(); err != nil {
		return api.Handler{}, err
	}
	e, ok := a.reg.Get(name)
	if !ok {
		return api.Handler{}, fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	if e.Paused != paused {
		e.Paused = paused
		var err error
		if e, err = a.reg.Put(ctx, e); err != nil {
			return api.Handler{}, err
		}
		a.sup.reconcile(ctx)
	}
	return a.view(ctx, e), nil
}

// Publish implements api.Backend.
func (a *App) Publish(ctx context.Context, topic string, recs []api.Record) ([]api.Produced, error) {
	trecs := toRecords(recs)
	ctx, span := a.tracePublish(ctx, topic, trecs)
	defer span.End()
	res, err := a.tc.Produce(ctx, topic, trecs)
	if err != nil {
		span.RecordError(err)
		return nil, asAPIError(err)
	}
	return produced(res), nil
}

// ListTopics implements api.Backend.
func (a *App) ListTopics(ctx context.Context) ([]api.TopicInfo, error) {
	ts, err := a.tc.List(ctx)
	if err != nil {
		return nil, err
	}
	return topicInfos(ts), nil
}

// CreateTopic implements api.Backend.
func (a *App) CreateTopic(ctx context.Context, name string, partitions int) error {
	return asAPIError(a.tc.Create(ctx, name, partitions, nil))
}

// Ready implements api.Backend: the registry is loaded and the broker
// answers.
func (a *App) Ready(ctx context.Context) (bool, map[string]string) {
	checks := map[string]string{}
	ok := true
	if loaded, err := a.reg.Loaded(); !loaded {
		ok = false
		checks["registry"] = "loading"
		if err != nil {
			checks["registry"] = "loading: " + err.Error()
		}
	} else {
		checks["registry"] = "ok"
	}
	if loaded, _ := a.dlq.Loaded(); !loaded {
		ok = false
		checks["deadLetterStates"] = "loading"
	} else {
		checks["deadLetterStates"] = "ok"
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := a.tc.Offsets(pctx, registry.Topic, 1); err != nil {
		ok = false
		checks["broker"] = "unreachable: " + err.Error()
	} else {
		checks["broker"] = "ok"
	}
	return ok, checks
}

func (a *App) notReady() error {
	if loaded, err := a.reg.Loaded(); !loaded {
		if err != nil {
			return fmt.Errorf("%w: the node is not ready (registry loading: %v)", api.ErrUnavailable, err)
		}
		return fmt.Errorf("%w: the node is not ready: the registry is still loading", api.ErrUnavailable)
	}
	return nil
}

func (a *App) deadLetterTopics(name string) (dlqTopic, replayTopic string, err error) {
	e, ok := a.reg.Get(name)
	if !ok {
		return "", "", fmt.Errorf("handler %q: %w", name, api.ErrNotFound)
	}
	return e.Spec.DeadLetter.Topic, e.Spec.ReplayTopic(), nil
}

// ListDeadLetters implements api.Backend.
func (a *App) ListDeadLetters(ctx context.Context, name string, f api.DeadLetterFilter) (api.DeadLetterPage, error) {
	topic, _, err := a.deadLetterTopics(name)
	if err != nil {
		return api.DeadLetterPage{}, err
	}
	p, err := a.dlq.List(ctx, name, topic, dlq.Filter(f))
	if err != nil {
		return api.DeadLetterPage{}, asAPIError(err)
	}
	return deadLetterPage(p), nil
}

// GetDeadLetter implements api.Backend.
func (a *App) GetDeadLetter(ctx context.Context, name, id string) (api.DeadLetter, error) {
	topic, _, err := a.deadLetterTopics(name)
	if err != nil {
		return api.DeadLetter{}, err
	}
	e, err := a.dlq.Get(ctx, name, topic, id)
	if err != nil {
		return api.DeadLetter{}, asAPIError(err)
	}
	return deadLetter(e), nil
}

// ReplayDeadLetters implements api.Backend.
func (a *App) ReplayDeadLetters(ctx context.Context, name string, sel api.Selection) (int, error) {
	topic, replay, err := a.deadLetterTopics(name)
	if err != nil {
		return 0, err
	}
	if err := a.tc.Ensure(ctx, replay, 1, nil); err != nil {
		return 0, err
	}
	n, err := a.dlq.Replay(ctx, name, topic, replay, dlq.Selection(sel))
	return n, asAPIError(err)
}

// DiscardDeadLetters implements api.Backend.
func (a *App) DiscardDeadLetters(ctx context.Context, name string, sel api.Selection) (int, error) {
	topic, _, err := a.deadLetterTopics(name)
	if err != nil {
		return 0, err
	}
	n, err := a.dlq.Discard(ctx, name, topic, dlq.Selection(sel))
	return n, asAPIError(err)
}
