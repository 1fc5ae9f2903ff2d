package api

import (
	"fmt"
	"net/http"
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
	page, err := s.b.ListDeadLetters(r.Context(), r.PathValue("name"), f)
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *server) getDLQ(w http.ResponseWriter, r *http.Request) {
	e, err := s.b.GetDeadLetter(r.Context(), r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *server) discardOne(w http.ResponseWriter, r *http.Request) {
	n, err := s.b.DiscardDeadLetters(r.Context(), r.PathValue("name"), Selection{IDs: []string{r.PathValue("id")}})
	if err != nil {
		backendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, PurgeResponse{Discarded: n})
}

func (s *server) dlqAction(replay bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
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
		if replay {
			n, err := s.b.ReplayDeadLetters(r.Context(), name, sel)
			if err != nil {
				backendErr(w, err)
				return
			}
			writeJSON(w, http.StatusOK, ReplayResponse{Replayed: n})
			return
		}
		n, err := s.b.DiscardDeadLetters(r.Context(), name, sel)
		if err != nil {
			backendErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, PurgeResponse{Discarded: n})
	}
}
