package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/cli"
)

// fakeAPI is a small in-memory stand-in for the Sluice API, enough to drive
// the client commands over real HTTP. It records every request.
type fakeAPI struct {
	*httptest.Server

	mu        sync.Mutex
	handlers  map[string]api.Handler
	topics    map[string]api.TopicInfo
	published map[string][]api.PublishMessage
	// publishLimit, if not 0, fails with 503 a publish that would take a
	// topic past this many messages.
	publishLimit int
	// deadLetters holds each handler's dead-letter entries, newest first,
	// with their payloads; listings leave the payloads out.
	deadLetters map[string][]api.DeadLetter
	// overview is what GET /v1/overview answers. overviewStatus, when it
	// has an entry for the nth overview request (counting from 1), makes
	// that request fail with the status instead; overviews counts them.
	overview       api.Overview
	overviewStatus map[int]int
	overviews      int
	reqs           []fakeRequest
	// jobs are the dead-letter jobs started, each over at once.
	jobs   []api.DeadLetterJob
	jobSeq int
}

// fakeRequest is one request the fake received. Path is the escaped path
// followed, when there is a query, by "?" and the raw query.
type fakeRequest struct {
	Method, Path, Body string
}

var fakeTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{
		handlers:    map[string]api.Handler{},
		topics:      map[string]api.TopicInfo{},
		published:   map[string][]api.PublishMessage{},
		deadLetters: map[string][]api.DeadLetter{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/handlers/{name}", f.putHandler)
	mux.HandleFunc("GET /v1/handlers", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		l := api.HandlerList{Handlers: []api.Handler{}}
		for _, h := range f.handlers {
			l.Handlers = append(l.Handlers, h)
		}
		// Unsorted on purpose: the CLI sorts.
		sort.Slice(l.Handlers, func(i, j int) bool { return l.Handlers[i].Name > l.Handlers[j].Name })
		reply(w, 200, l)
	})
	mux.HandleFunc("GET /v1/handlers/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.withHandler(w, r, func(h *api.Handler) { reply(w, 200, h) })
	})
	mux.HandleFunc("DELETE /v1/handlers/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.withHandler(w, r, func(h *api.Handler) {
			delete(f.handlers, h.Name)
			w.WriteHeader(http.StatusNoContent)
		})
	})
	mux.HandleFunc("POST /v1/handlers/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		f.withHandler(w, r, func(h *api.Handler) {
			switch r.PathValue("action") {
			case "pause":
				h.Paused = true
			case "resume":
				h.Paused = false
			default:
				reply(w, 404, api.Error{Error: "no such action"})
				return
			}
			h.Version++
			f.handlers[h.Name] = *h
			reply(w, 200, h)
		})
	})
	mux.HandleFunc("POST /v1/topics/{topic}/messages", f.publish)
	mux.HandleFunc("GET /v1/topics", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		l := api.TopicList{Topics: []api.TopicInfo{}}
		for _, t := range f.topics {
			l.Topics = append(l.Topics, t)
		}
		reply(w, 200, l)
	})
	mux.HandleFunc("POST /v1/topics", func(w http.ResponseWriter, r *http.Request) {
		var req api.CreateTopicRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, 400, api.Error{Error: err.Error()})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.topics[req.Name]; ok {
			reply(w, 409, api.Error{Error: fmt.Sprintf("topic %q exists", req.Name), Field: "name"})
			return
		}
		if req.Partitions > 1000 {
			reply(w, 400, api.Error{Error: "must be at most 1000", Field: "partitions"})
			return
		}
		if req.Partitions == 0 {
			req.Partitions = 12
		}
		f.topics[req.Name] = api.TopicInfo{Name: req.Name, Partitions: req.Partitions}
		reply(w, 201, f.topics[req.Name])
	})
	f.addDLQRoutes(mux)
	mux.HandleFunc("GET /v1/overview", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.overviews++
		if st := f.overviewStatus[f.overviews]; st != 0 {
			reply(w, st, api.Error{Error: "overview unavailable"})
			return
		}
		reply(w, 200, f.overview)
	})

	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		f.mu.Lock()
		path := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
		f.reqs = append(f.reqs, fakeRequest{r.Method, path, string(b)})
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) putHandler(w http.ResponseWriter, r *http.Request) {
	var s handlers.Spec
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		reply(w, 400, api.Error{Error: err.Error()})
		return
	}
	if s.Topic == "forbidden" {
		reply(w, 400, api.Error{Error: "is not allowed here", Field: "topic"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h, exists := f.handlers[s.Name]
	h.Name, h.Spec, h.UpdatedAt = s.Name, s, fakeTime
	h.Version++
	f.handlers[s.Name] = h
	status := http.StatusCreated
	if exists {
		status = http.StatusOK
	}
	reply(w, status, h)
}

// withHandler runs fn on the named handler under the lock, or answers 404.
func (f *fakeAPI) withHandler(w http.ResponseWriter, r *http.Request, fn func(*api.Handler)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.handlers[r.PathValue("name")]
	if !ok {
		reply(w, 404, api.Error{Error: fmt.Sprintf("handler %q not found", r.PathValue("name"))})
		return
	}
	fn(&h)
}

// publish puts every message without a partition on partition 0.
func (f *fakeAPI) publish(w http.ResponseWriter, r *http.Request) {
	var req api.PublishRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		reply(w, 400, api.Error{Error: err.Error()})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	topic := r.PathValue("topic")
	if f.publishLimit > 0 && len(f.published[topic])+len(req.Messages) > f.publishLimit {
		reply(w, 503, api.Error{Error: "topic is full"})
		return
	}
	resp := api.PublishResponse{Results: []api.Produced{}}
	for _, m := range req.Messages {
		p := 0
		if m.Partition != nil {
			p = *m.Partition
		}
		var off int64
		for _, prev := range f.published[topic] {
			if prev.Partition != nil && *prev.Partition == p || prev.Partition == nil && p == 0 {
				off++
			}
		}
		f.published[topic] = append(f.published[topic], m)
		resp.Results = append(resp.Results, api.Produced{Partition: p, Offset: off})
	}
	reply(w, 200, resp)
}

// addDLQRoutes serves the dead-letter routes of a registered handler the
// way api/dlq.go does: the same parameters, checks and status codes.
func (f *fakeAPI) addDLQRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/handlers/{name}/dlq", func(w http.ResponseWriter, r *http.Request) {
		f.withHandler(w, r, func(h *api.Handler) {
			q := r.URL.Query()
			var fl api.DeadLetterFilter
			for _, p := range []struct {
				name   string
				dst    *int
				lo, hi int
			}{{"limit", &fl.Limit, 1, 1000}, {"offset", &fl.Offset, 0, 1 << 30}} {
				if v := q.Get(p.name); v != "" {
					n, err := strconv.Atoi(v)
					if err != nil || n < p.lo || n > p.hi {
						reply(w, 400, api.Error{Error: fmt.Sprintf("must be a whole number from %d to %d, got %q", p.lo, p.hi, v), Field: p.name})
						return
					}
					*p.dst = n
				}
			}
			for _, p := range []struct {
				name string
				dst  *time.Time
			}{{"since", &fl.Since}, {"until", &fl.Until}} {
				if v := q.Get(p.name); v != "" {
					t, err := time.Parse(time.RFC3339, v)
					if err != nil {
						reply(w, 400, api.Error{Error: "must be an RFC 3339 time", Field: p.name})
						return
					}
					*p.dst = t
				}
			}
			if fl.Limit == 0 {
				fl.Limit = 50
			}
			needle := strings.ToLower(q.Get("error"))
			var match []api.DeadLetter
			for _, e := range f.deadLetters[h.Name] {
				switch {
				case needle != "" && !strings.Contains(strings.ToLower(e.Error), needle):
				case !fl.Since.IsZero() && e.LastFailure.Before(fl.Since):
				case !fl.Until.IsZero() && e.LastFailure.After(fl.Until):
				case q.Get("state") != "" && e.State != q.Get("state"):
				default:
					e.Value, e.ValueBase64, e.Headers = nil, "", nil
					match = append(match, e)
				}
			}
			p := api.DeadLetterPage{Entries: []api.DeadLetter{}, Total: len(match)}
			if fl.Offset < len(match) {
				end := min(len(match), fl.Offset+fl.Limit)
				p.Entries = match[fl.Offset:end]
				if end < len(match) {
					p.Next = end
				}
			}
			reply(w, 200, p)
		})
	})
	mux.HandleFunc("GET /v1/handlers/{name}/dlq/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.withHandler(w, r, func(h *api.Handler) {
			i := f.deadLetterIndex(w, h.Name, r.PathValue("id"))
			if i >= 0 {
				reply(w, 200, f.deadLetters[h.Name][i])
			}
		})
	})
	mux.HandleFunc("DELETE /v1/handlers/{name}/dlq/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.withHandler(w, r, func(h *api.Handler) {
			if i := f.deadLetterIndex(w, h.Name, r.PathValue("id")); i >= 0 {
				f.markDeadLetters(h.Name, []int{i}, api.StateDiscarded)
				reply(w, 200, api.PurgeResponse{Discarded: 1})
			}
		})
	})
	mux.HandleFunc("POST /v1/handlers/{name}/dlq/{action}", func(w http.ResponseWriter, r *http.Request) {
		action := r.PathValue("action")
		if action != "replay" && action != "purge" {
			reply(w, 404, api.Error{Error: "no such action"})
			return
		}
		var sel api.Selection
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sel); err != nil {
			reply(w, 400, api.Error{Error: err.Error()})
			return
		}
		if sel.All == (len(sel.IDs) > 0) {
			reply(w, 400, api.Error{Error: `name the entries: {"ids": ["3-1042", ...]} or {"all": true}`, Field: "ids"})
			return
		}
		f.withHandler(w, r, func(h *api.Handler) {
			var idx []int
			if sel.All {
				for i, e := range f.deadLetters[h.Name] {
					if e.State == api.StateDead {
						idx = append(idx, i)
					}
				}
			}
			for _, id := range sel.IDs {
				i := f.deadLetterIndex(w, h.Name, id)
				if i < 0 {
					return // nothing is marked
				}
				if !slices.Contains(idx, i) {
					idx = append(idx, i)
				}
			}
			state, kind := api.StateDiscarded, api.JobPurge
			if action == "replay" {
				state, kind = api.StateReplayed, api.JobReplay
			}
			f.markDeadLetters(h.Name, idx, state)
			if sel.All || len(sel.IDs) > api.MaxSyncSelection {
				// A job, as the API runs them; this one is over at once.
				f.jobSeq++
				job := api.DeadLetterJob{ID: fmt.Sprintf("job%d", f.jobSeq), Handler: h.Name, Kind: kind, Topic: h.Name + ".dlq",
					State: api.JobSucceeded, Done: len(idx), Total: len(idx), Node: "fake-node", StartedAt: fakeTime, FinishedAt: fakeTime}
				f.jobs = append(f.jobs, job)
				reply(w, 202, job)
				return
			}
			if action == "replay" {
				reply(w, 200, api.ReplayResponse{Replayed: len(idx)})
				return
			}
			reply(w, 200, api.PurgeResponse{Discarded: len(idx)})
		})
	})
	mux.HandleFunc("GET /v1/handlers/{name}/dlq/jobs/{job}", func(w http.ResponseWriter, r *http.Request) {
		f.withHandler(w, r, func(h *api.Handler) {
			for _, j := range f.jobs {
				if j.ID == r.PathValue("job") && j.Handler == h.Name {
					reply(w, 200, j)
					return
				}
			}
			reply(w, 404, api.Error{Error: fmt.Sprintf("dead-letter job not found: %q", r.PathValue("job"))})
		})
	})
}

// deadLetterIndex returns where entry id of handler is, or answers 404 and
// returns -1. The caller holds f.mu.
func (f *fakeAPI) deadLetterIndex(w http.ResponseWriter, handler, id string) int {
	i := slices.IndexFunc(f.deadLetters[handler], func(e api.DeadLetter) bool { return e.ID == id })
	if i < 0 {
		reply(w, 404, api.Error{Error: fmt.Sprintf("dead-letter entry not found: %q", id)})
	}
	return i
}

// markDeadLetters moves the entries at idx to state. The caller holds f.mu.
func (f *fakeAPI) markDeadLetters(handler string, idx []int, state string) {
	for _, i := range idx {
		f.deadLetters[handler][i].State = state
		f.deadLetters[handler][i].StateChangedAt = fakeTime
	}
}

// setDeadLetters replaces handler's dead-letter entries (newest first).
func (f *fakeAPI) setDeadLetters(handler string, es []api.DeadLetter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadLetters[handler] = slices.Clone(es)
}

// deadLetterStates returns the state of each of handler's entries by id.
func (f *fakeAPI) deadLetterStates(handler string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for _, e := range f.deadLetters[handler] {
		out[e.ID] = e.State
	}
	return out
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// setOverview sets what GET /v1/overview answers.
func (f *fakeAPI) setOverview(ov api.Overview) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.overview = ov
}

// overviewRequests returns how many overview requests the fake received.
func (f *fakeAPI) overviewRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.overviews
}

func (f *fakeAPI) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.reqs...)
}

func (f *fakeAPI) messages(topic string) []api.PublishMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.PublishMessage(nil), f.published[topic]...)
}

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the CLI in-process against server (through SLUICE_SERVER, as a
// user's shell would) with stdin as its standard input.
func run(t *testing.T, server, stdin string, args ...string) result {
	t.Helper()
	var out, errOut strings.Builder
	env := cli.Env{
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(k string) string {
			if k == "SLUICE_SERVER" {
				return server
			}
			return ""
		},
	}
	code := cli.Run(context.Background(), args, env)
	return result{code, out.String(), errOut.String()}
}
