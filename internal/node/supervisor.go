package node

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/dlq"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/queues"
	"github.com/sluicehq/sluice/registry"
	"github.com/sluicehq/sluice/topics"
)

// supervisorDeps is everything the supervisor uses of the node, given
// explicitly.
type supervisorDeps struct {
	cfg   Config
	log   *slog.Logger
	funcs map[string]goHandler // the Go handlers compiled into this node
	// policy is where HTTP handlers may send requests.
	policy *handlers.NetPolicy
	reg    *registry.Registry
	tc     *topics.Client
	// kafka is how each handler's source reaches the cluster (brokers,
	// dialer, client id, member data, group timeouts).
	kafka consumers.KafkaConfig
	// dead and parker take the messages the engine gives up on, and those
	// it parks on delay topics.
	dead   consumers.DeadLetterer
	parker consumers.Parker
	// dlq records the dead-letter topic a Go handler leaves when its
	// compiled spec changes it.
	dlq *dlq.Queue
	// queues gives the sources of handlers whose source is a queue.
	queues *queues.Queues
	// hooks gives a handler's metrics and trace hooks.
	hooks func(handlers.Spec) consumers.Hooks
}

// supervisor keeps one runner per registered, unpaused handler that this
// node can invoke, and converges on every registry change.
type supervisor struct {
	d supervisorDeps

	mu      sync.Mutex // serializes reconcile and stopAll; guards goDone
	mapMu   sync.Mutex // guards runners, held briefly
	runners map[string]*runnerHandle
	goDone  bool
	// counters outlive runners, so a handler's counts keep growing across
	// restarts, pauses and spec changes on this node.
	counters map[string]*consumers.Counters
}

// runnerHandle is a runner this node runs, and how to stop it.
type runnerHandle struct {
	spec   handlers.Spec
	runner *consumers.Runner
	cancel context.CancelFunc
	done   chan struct{}
	// refusal is why the handler's URL is refused by the node's
	// handlers config, when it was on start.
	refusal atomic.Pointer[error]
}

func newSupervisor(d supervisorDeps) *supervisor {
	return &supervisor{d: d, runners: make(map[string]*runnerHandle), counters: make(map[string]*consumers.Counters)}
}

func (s *supervisor) run(ctx context.Context) {
	for {
		changed := s.d.reg.Changed()
		if loaded, _ := s.d.reg.Loaded(); loaded {
			s.registerGo(ctx)
			s.reconcile(ctx)
		}
		select {
		case <-changed:
		case <-time.After(5 * time.Second): // also retries what failed
		case <-ctx.Done():
			s.stopAll()
			return
		}
	}
}

// registerGo writes the specs of Go handlers compiled into this node, once,
// unless the registry already has them as they are.
func (s *supervisor) registerGo(ctx context.Context) {
	s.mu.Lock()
	if s.goDone {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	for name, g := range s.d.funcs {
		if e, ok := s.d.reg.Get(name); ok && reflect.DeepEqual(e.Spec, g.spec) {
			continue
		}
		if g.spec.Source.IsQueue() {
			// A queue source provisions its own topic when it starts.
		} else if err := s.d.tc.Ensure(ctx, g.spec.Topic, 0, nil); err != nil {
			s.d.log.Warn("creating topic for Go handler failed; will retry", "handler", name, "err", err)
			return
		}
		e, exists := s.d.reg.Get(name)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if exists && e.Spec.DeadLetter.Topic != g.spec.DeadLetter.Topic {
			// As through the API: the topic it leaves stays reachable.
			if err := s.d.dlq.RetireTopic(wctx, name, e.Spec.DeadLetter.Topic); err != nil {
				cancel()
				s.d.log.Warn("recording the dead-letter topic a Go handler leaves failed; will retry", "handler", name, "err", err)
				return
			}
		}
		_, err := s.d.reg.Put(wctx, registry.Entry{Spec: g.spec, Paused: e.Paused})
		cancel()
		if err != nil {
			s.d.log.Warn("registering Go handler failed; will retry", "handler", name, "err", err)
			return
		}
	}
	s.mu.Lock()
	s.goDone = true
	s.mu.Unlock()
}

// reconcile starts, restarts and stops runners to match the registry. It
// returns once stopped runners have drained and committed.
func (s *supervisor) reconcile(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]handlers.Spec)
	for _, e := range s.d.reg.List() {
		if e.Paused || !s.invokable(e.Spec) {
			continue
		}
		want[e.Spec.Name] = e.Spec
	}
	var stopping []*runnerHandle
	s.mapMu.Lock()
	for name, rn := range s.runners {
		if spec, ok := want[name]; !ok || !reflect.DeepEqual(spec, rn.spec) {
			stopping = append(stopping, rn)
			delete(s.runners, name)
		}
	}
	s.mapMu.Unlock()
	stopRunners(stopping)
	for name, spec := range want {
		s.mapMu.Lock()
		_, ok := s.runners[name]
		s.mapMu.Unlock()
		if !ok {
			rn := s.start(ctx, spec)
			s.mapMu.Lock()
			s.runners[name] = rn
			s.mapMu.Unlock()
		}
	}
}

func (s *supervisor) invokable(spec handlers.Spec) bool {
	if spec.Go != nil {
		_, ok := s.d.funcs[spec.Name]
		return ok
	}
	return spec.HTTP != nil
}

func (s *supervisor) start(ctx context.Context, spec handlers.Spec) *runnerHandle {
	var inv handlers.Invoker
	var closeInv func()
	if spec.Go != nil {
		inv = s.d.funcs[spec.Name].fn
	} else {
		h := handlers.NewHTTPInvoker(spec.HTTP, spec.Concurrency.Max, handlers.WithNetPolicy(s.d.policy))
		inv, closeInv = h, h.Close
	}
	log := s.d.log.With("handler", spec.Name)
	if h, ok := inv.(*handlers.HTTPInvoker); ok {
		if err := h.CheckSigning(); err != nil {
			log.Error("cannot sign requests: every invocation fails until the secret can be read", "err", err)
		}
	}
	start := consumers.FirstOffset
	if spec.StartFrom == handlers.StartLatest {
		start = consumers.LastOffset
	}
	var src consumers.Source
	var err error
	if spec.Source.IsQueue() {
		src, err = s.d.queues.Source(spec, log)
	} else {
		var opts []consumers.SourceOption
		if g, ok := spec.StartFrom.TakeoverGroup(); ok {
			opts = append(opts, consumers.TakeOver(g))
		}
		src, err = consumers.NewKafkaSource(s.d.kafka, spec.Topics(), spec.Group(), start, opts...)
	}
	if err != nil { // only on a programming error: the spec was validated
		log.Error("cannot consume", "err", err)
	}
	r := consumers.NewRunner(spec, inv, src, consumers.Options{
		CommitInterval:     s.d.cfg.CommitInterval,
		DrainTimeout:       s.d.cfg.DrainTimeout,
		DrainGrace:         s.d.cfg.DrainGrace,
		FinalCommitTimeout: s.d.cfg.FinalCommitTimeout,
		StallAfter:         s.d.cfg.StallAfter(),
		DeadLetter:         s.d.dead,
		Parker:             s.d.parker,
		Outputs:            s.d.tc,
		Hooks:              s.d.hooks(spec),
		Counters:           s.countersOf(spec.Name),
		Logger:             s.d.log,
	})
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rn := &runnerHandle{spec: spec, runner: r, cancel: cancel, done: make(chan struct{})}
	if spec.HTTP != nil {
		// A spec applied under another configuration (or whose name now
		// resolves elsewhere) may be refused now: every connection to a
		// refused address fails, and its messages are dead-lettered. The
		// check may resolve the name, so it does not hold up the start.
		go func() {
			if err := s.d.policy.CheckSpec(rctx, &spec); err != nil {
				log.Error("the handler's URL is refused by this node's handlers config: its messages are dead-lettered", "err", err)
				rn.refusal.Store(&err)
			}
		}()
	}
	go func() {
		defer close(rn.done)
		if closeInv != nil {
			defer closeInv()
		}
		// The topic is created on first use, so a handler may be registered
		// before anything is published. A queue source provisions its own.
		for backoff := 200 * time.Millisecond; !spec.Source.IsQueue(); backoff = min(2*backoff, 5*time.Second) {
			err := s.d.tc.Ensure(rctx, spec.Topic, 0, nil)
			for _, t := range spec.Topics()[1:] {
				if err == nil {
					err = s.d.tc.Ensure(rctx, t, 1, nil)
				}
			}
			if err == nil {
				break
			}
			if rctx.Err() != nil {
				return
			}
			r.SourceError(err)
			log.Warn("creating topic failed; retrying", "topic", spec.Topic, "err", err)
			select {
			case <-time.After(backoff):
			case <-rctx.Done():
				return
			}
		}
		_ = r.Run(rctx)
	}()
	log.Info("handler started", "source", spec.SourceKind(), "topic", spec.Topic, "group", spec.Group())
	return rn
}

func stopRunners(rs []*runnerHandle) {
	for _, rn := range rs {
		rn.cancel()
	}
	for _, rn := range rs {
		<-rn.done
	}
}

func (s *supervisor) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mapMu.Lock()
	rs := make([]*runnerHandle, 0, len(s.runners))
	for name, rn := range s.runners {
		rs = append(rs, rn)
		delete(s.runners, name)
	}
	s.mapMu.Unlock()
	stopRunners(rs)
}

func (s *supervisor) countersOf(name string) *consumers.Counters {
	s.mapMu.Lock()
	defer s.mapMu.Unlock()
	c, ok := s.counters[name]
	if !ok {
		c = &consumers.Counters{}
		s.counters[name] = c
	}
	return c
}

// runner returns the runner of name, if this node runs it.
func (s *supervisor) runner(name string) *consumers.Runner {
	s.mapMu.Lock()
	defer s.mapMu.Unlock()
	if rn, ok := s.runners[name]; ok {
		return rn.runner
	}
	return nil
}

// refusal is why the handler's URL was refused by the node's handlers
// config when its runner started, or nil.
func (s *supervisor) refusal(name string) error {
	s.mapMu.Lock()
	defer s.mapMu.Unlock()
	if rn, ok := s.runners[name]; ok {
		if err := rn.refusal.Load(); err != nil {
			return *err
		}
	}
	return nil
}
