package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/handlers"
)

// ReplayResponse is POST /v1/handlers/{name}/dlq/replay.
type ReplayResponse struct {
	Replayed int `json:"replayed"`
}

// PurgeResponse is POST /v1/handlers/{name}/dlq/purge and
// DELETE /v1/handlers/{name}/dlq/{id}.
type PurgeResponse struct {
	Discarded int `json:"discarded"`
}

// MaxSyncSelection is the most entries named by id that a replay or purge
// handles within the request (200 with the count). A selection of all, or
// of more ids, starts a job instead (202 with the job).
const MaxSyncSelection = 500

// Dead-letter job kinds and states.
const (
	JobReplay    = "replay"
	JobPurge     = "purge"
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
)

// DeadLetterJob is a replay or purge running in a node (202 from POST
// .../dlq/replay or .../dlq/purge; GET /v1/handlers/{name}/dlq/jobs/{id}
// on any node). Its row in the dead-letter state topic is refreshed after
// each batch and every 10s; a running job not refreshed for 60s (its node
// crashed) shows as failed. A node that crashes mid-job loses no entry
// (what was not marked stays dead) but does not resume the job: start it
// again.
type DeadLetterJob struct {
	ID      string `json:"id"`
	Handler string `json:"handler"`
	// Kind is replay or purge.
	Kind string `json:"kind"`
	// Topic is the dead-letter topic the entries are read from.
	Topic string `json:"topic"`
	// State is running, succeeded or failed (then Error says why; the
	// entries done so far stay done).
	State string `json:"state"`
	// Done counts the entries replayed or discarded and marked so; Total
	// is how many were selected (0 until the selection is read).
	Done       int       `json:"done"`
	Total      int       `json:"total"`
	Error      string    `json:"error,omitempty"`
	Node       string    `json:"node,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// UpdatedAt is the last heartbeat or progress of a running job.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// Finished reports whether the job is over.
func (j DeadLetterJob) Finished() bool { return j.State != JobRunning }

// DeadLetterTopics is GET /v1/handlers/{name}/dlq/topics: the dead-letter
// topics whose entries can be named with ?topic=.
type DeadLetterTopics struct {
	// Current is the handler's dead-letter topic; "" if there is no such
	// handler (it was deleted).
	Current string `json:"current,omitempty"`
	// Retired are the topics it used before (deadLetter.topic changed, or
	// the handler was deleted), by name.
	Retired []RetiredTopic `json:"retired"`
}

// RetiredTopic is a dead-letter topic a handler left.
type RetiredTopic struct {
	Topic     string    `json:"topic"`
	RetiredAt time.Time `json:"retiredAt"`
}

// dlqTopicParam reads ?topic=: "" for the handler's current dead-letter
// topic. Whether it is one of the handler's is the backend's to say.
func dlqTopicParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.URL.Query().Get("topic")
	if t == "" {
		return "", true
	}
	// A Kafka topic, or "<source>:<name>" on a queue server.
	src, _ := handlers.SplitDeadLetterTopic(t)
	if err := handlers.ValidateDeadLetterTopic("topic", src, t, ""); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return "", false
	}
	return t, true
}

func (s *server) listDLQ(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f DeadLetterFilter
	var err error
	intParam := func(name string, dst *int, lo, hi int) bool {
		v := q.Get(name)
		if v == "" {
			return true
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: name, Msg: fmt.Sprintf("must be a whole number from %d to %d, got %q", lo, hi, v)})
			return false
		}
		*dst = n
		return true
	}
	timeParam := func(name string, dst *time.Time) bool {
		v := q.Get(name)
		if v == "" {
			return true
		}
		if *dst, err = time.Parse(time.RFC3339, v); err != nil {
			writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: name, Msg: fmt.Sprintf("must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", v)})
			return false
		}
		return true
	}
	if !intParam("limit", &f.Limit, 1, 1000) || !intParam("offset", &f.Offset, 0, 1<<30) ||
		!timeParam("since", &f.Since) || !timeParam("until", &f.Until) {
		return
	}
	f.ErrorContains = q.Get("error")
	switch st := q.Get("state"); st {
	case "", StateDead, StateReplayed, StateDiscarded:
		f.State = st
	default:
		writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: "state", Msg: fmt.Sprintf("must be dead, replayed or discarded, got %q", st)})
		return
	}
	topic, ok := dlqTopicParam(w, r)
	if !ok {
		return
	}
	page, err := s.b.ListDeadLetters(r.Context(), r.PathValue("name"), topic, f)
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *server) getDLQ(w http.ResponseWriter, r *http.Request) {
	topic, ok := dlqTopicParam(w, r)
	if !ok {
		return
	}
	e, err := s.b.GetDeadLetter(r.Context(), r.PathValue("name"), topic, r.PathValue("id"))
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *server) discardOne(w http.ResponseWriter, r *http.Request) {
	topic, ok := dlqTopicParam(w, r)
	if !ok {
		return
	}
	n, err := s.b.DiscardDeadLetters(r.Context(), r.PathValue("name"), topic, Selection{IDs: []string{r.PathValue("id")}})
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, PurgeResponse{Discarded: n})
}

// dlqAction is POST .../dlq/replay (replay) and .../dlq/purge. Up to
// MaxSyncSelection ids are handled in the request (200 with the count);
// all, or more ids, start a job (202 with the job, Location naming it).
func (s *server) dlqAction(replay bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		topic, ok := dlqTopicParam(w, r)
		if !ok {
			return
		}
		body, ok := s.readBody(w, r, 1<<20)
		if !ok {
			return
		}
		var sel Selection
		if err := strictJSON(body, &sel); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		if sel.All == (len(sel.IDs) > 0) {
			writeErr(w, http.StatusBadRequest, &handlers.FieldError{Field: "ids", Msg: `name the entries: {"ids": ["3-1042", ...]} or {"all": true}`})
			return
		}
		name := r.PathValue("name")
		if sel.All || len(sel.IDs) > MaxSyncSelection {
			kind := JobPurge
			if replay {
				kind = JobReplay
			}
			job, err := s.b.StartDeadLetterJob(r.Context(), name, topic, kind, sel)
			if err != nil {
				backendErr(w, err)
				return
			}
			w.Header().Set("Location", "/v1/handlers/"+url.PathEscape(name)+"/dlq/jobs/"+url.PathEscape(job.ID))
			writeJSON(w, http.StatusAccepted, job)
			return
		}
		if replay {
			n, err := s.b.ReplayDeadLetters(r.Context(), name, topic, sel)
			if err != nil {
				backendErr(w, err)
				return
			}
			writeJSON(w, http.StatusOK, ReplayResponse{Replayed: n})
			return
		}
		n, err := s.b.DiscardDeadLetters(r.Context(), name, topic, sel)
		if err != nil {
			backendErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, PurgeResponse{Discarded: n})
	}
}

func (s *server) getDLQJob(w http.ResponseWriter, r *http.Request) {
	job, err := s.b.GetDeadLetterJob(r.Context(), r.PathValue("name"), r.PathValue("job"))
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, job)
}

func (s *server) listDLQJobs(w http.ResponseWriter, r *http.Request) {
	jobs, err := s.b.ListDeadLetterJobs(r.Context(), r.PathValue("name"))
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Jobs []DeadLetterJob `json:"jobs"`
	}{jobs})
}

func (s *server) dlqTopics(w http.ResponseWriter, r *http.Request) {
	ts, err := s.b.DeadLetterTopics(r.Context(), r.PathValue("name"))
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}
