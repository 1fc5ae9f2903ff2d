package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/api"
)

// ListDeadLetters returns one page of the named handler's dead-letter
// entries, newest first, that match f. Zero fields of f are not sent, so
// the server's defaults apply (50 entries from offset 0, every state). If
// there is no such handler, the error satisfies IsNotFound; a filter the
// server refuses is an *APIError with status 400 naming the parameter.
//
// With InTopic, the entries of another dead-letter topic of the handler
// are listed: one it used before, also once it was deleted.
func (c *Client) ListDeadLetters(ctx context.Context, name string, f api.DeadLetterFilter, opts ...DLQOption) (api.DeadLetterPage, error) {
	var p api.DeadLetterPage
	if name == "" {
		return p, errors.New("listing dead letters: the handler name is empty")
	}
	path := dlqPath(name)
	q := filterQuery(f)
	dlqOpts(opts).query(q)
	if q := q.Encode(); q != "" {
		path += "?" + q
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, &p)
	return p, err
}

// filterQuery is f as the query parameters of GET /v1/handlers/{name}/dlq.
// Times are sent in UTC with their fractional seconds, which RFC 3339
// allows: truncating them would move an --until bound and drop entries.
func filterQuery(f api.DeadLetterFilter) url.Values {
	q := url.Values{}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Offset != 0 {
		q.Set("offset", strconv.Itoa(f.Offset))
	}
	if f.ErrorContains != "" {
		q.Set("error", f.ErrorContains)
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	return q
}

// GetDeadLetter returns one entry of the named handler's dead-letter queue
// with its payload (Value, or ValueBase64 when it is not UTF-8) and its
// original headers. If there is no such handler or entry, the error
// satisfies IsNotFound.
// An id of a further record of an entry (see api.DeadLetter.Duplicates)
// returns that record with DuplicateOf naming the entry.
func (c *Client) GetDeadLetter(ctx context.Context, name, id string, opts ...DLQOption) (api.DeadLetter, error) {
	var e api.DeadLetter
	if name == "" || id == "" {
		return e, errors.New("getting dead letter: the handler name or the entry id is empty")
	}
	_, err := c.do(ctx, http.MethodGet, dlqOpts(opts).path(dlqPath(name)+"/"+url.PathEscape(id)), nil, &e)
	return e, err
}

// DLQOption adjusts a dead-letter call.
type DLQOption func(*dlqOptions)

type dlqOptions struct {
	topic    string
	progress func(api.DeadLetterJob)
	poll     time.Duration
}

// InTopic names the dead-letter topic to act on: one the handler used
// before its deadLetter.topic changed, or before it was deleted (see
// DeadLetterTopics). Without it the handler's current topic is used.
func InTopic(topic string) DLQOption { return func(o *dlqOptions) { o.topic = topic } }

// WithProgress is called with the job each time ReplayDeadLetters or
// PurgeDeadLetters polls a job it follows, and once it is over.
func WithProgress(fn func(api.DeadLetterJob)) DLQOption {
	return func(o *dlqOptions) { o.progress = fn }
}

// PollEvery sets how often a followed job is polled. Default 500ms.
func PollEvery(d time.Duration) DLQOption { return func(o *dlqOptions) { o.poll = d } }

func dlqOpts(opts []DLQOption) dlqOptions {
	o := dlqOptions{poll: 500 * time.Millisecond}
	for _, fn := range opts {
		fn(&o)
	}
	return o
}

func (o dlqOptions) query(q url.Values) {
	if o.topic != "" {
		q.Set("topic", o.topic)
	}
}

func (o dlqOptions) path(p string) string {
	if o.topic != "" {
		return p + "?" + url.Values{"topic": {o.topic}}.Encode()
	}
	return p
}

// ReplayDeadLetters delivers the selected entries again to the named
// handler alone and marks them replayed. sel names entries by id, or sets
// All for every entry in state dead; exactly one of the two, else nothing
// is sent. It returns how many entries were replayed. An unknown handler
// or id is an error that satisfies IsNotFound, and then nothing is
// replayed.
//
// All, or more than api.MaxSyncSelection ids, run as a job in the node;
// ReplayDeadLetters follows it until it is over (see WithProgress) and
// returns its count. If ctx ends first, the job goes on in the node: the
// error then names it (StartDeadLetters starts one without following it).
func (c *Client) ReplayDeadLetters(ctx context.Context, name string, sel api.Selection, opts ...DLQOption) (int, error) {
	return c.dlqAction(ctx, name, "replay", sel, opts)
}

// PurgeDeadLetters marks the selected entries discarded, so that listings
// filtered on state dead and replays of All skip them. sel and the job it
// may run are as for ReplayDeadLetters. It returns how many entries were
// discarded.
func (c *Client) PurgeDeadLetters(ctx context.Context, name string, sel api.Selection, opts ...DLQOption) (int, error) {
	return c.dlqAction(ctx, name, "purge", sel, opts)
}

func (c *Client) dlqAction(ctx context.Context, name, verb string, sel api.Selection, opts []DLQOption) (int, error) {
	doing := "replaying dead letters"
	if verb == "purge" {
		doing = "discarding dead letters"
	}
	o := dlqOpts(opts)
	sync, job, err := c.startDLQ(ctx, name, verb, doing, sel, o)
	if err != nil || job == nil {
		return sync, err
	}
	j, err := c.WaitDeadLetterJob(ctx, name, job.ID, opts...)
	if err != nil {
		return j.Done, err
	}
	if j.State == api.JobFailed {
		return j.Done, fmt.Errorf("%s of %s: job %s failed after %d of %d entries: %s", doing, name, j.ID, j.Done, j.Total, j.Error)
	}
	return j.Done, nil
}

// StartDeadLetters starts a replay (verb "replay") or purge ("purge") of
// the selected entries and returns at once: with the job that runs it
// (202), or with nil and the count when the server did it within the
// request (a selection of up to api.MaxSyncSelection ids).
func (c *Client) StartDeadLetters(ctx context.Context, name, verb string, sel api.Selection, opts ...DLQOption) (*api.DeadLetterJob, int, error) {
	if verb != "replay" && verb != "purge" {
		return nil, 0, fmt.Errorf("starting dead letters: verb %q is neither replay nor purge", verb)
	}
	n, job, err := c.startDLQ(ctx, name, verb, verb+" of dead letters", sel, dlqOpts(opts))
	return job, n, err
}

func (c *Client) startDLQ(ctx context.Context, name, verb, doing string, sel api.Selection, o dlqOptions) (int, *api.DeadLetterJob, error) {
	if err := checkSelection(doing, name, sel); err != nil {
		return 0, nil, err
	}
	var raw json.RawMessage
	status, err := c.do(ctx, http.MethodPost, o.path(dlqPath(name)+"/"+verb), sel, &raw)
	if err != nil {
		return 0, nil, err
	}
	if status == http.StatusAccepted {
		var job api.DeadLetterJob
		if err := json.Unmarshal(raw, &job); err != nil || job.ID == "" {
			return 0, nil, fmt.Errorf("%s of %s: the server answered 202 without a job: %s", doing, name, raw)
		}
		return 0, &job, nil
	}
	var r struct {
		Replayed  int `json:"replayed"`
		Discarded int `json:"discarded"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return 0, nil, fmt.Errorf("%s of %s: reading the answer: %w", doing, name, err)
	}
	return r.Replayed + r.Discarded, nil, nil
}

// GetDeadLetterJob returns a dead-letter job of the named handler. Jobs
// are kept in the dead-letter state topic, so any node answers.
func (c *Client) GetDeadLetterJob(ctx context.Context, name, id string) (api.DeadLetterJob, error) {
	var j api.DeadLetterJob
	if name == "" || id == "" {
		return j, errors.New("getting a dead-letter job: the handler name or the job id is empty")
	}
	_, err := c.do(ctx, http.MethodGet, dlqPath(name)+"/jobs/"+url.PathEscape(id), nil, &j)
	return j, err
}

// ListDeadLetterJobs returns the named handler's dead-letter jobs (the
// newest 20 finished ones and any running), newest first.
func (c *Client) ListDeadLetterJobs(ctx context.Context, name string) ([]api.DeadLetterJob, error) {
	var r struct {
		Jobs []api.DeadLetterJob `json:"jobs"`
	}
	if name == "" {
		return nil, errors.New("listing dead-letter jobs: the handler name is empty")
	}
	_, err := c.do(ctx, http.MethodGet, dlqPath(name)+"/jobs", nil, &r)
	return r.Jobs, err
}

// WaitDeadLetterJob polls a job until it is over and returns it. If ctx
// ends first, the job goes on in the node and the error says so.
func (c *Client) WaitDeadLetterJob(ctx context.Context, name, id string, opts ...DLQOption) (api.DeadLetterJob, error) {
	o := dlqOpts(opts)
	var last api.DeadLetterJob
	for {
		j, err := c.GetDeadLetterJob(ctx, name, id)
		if err != nil {
			if ctx.Err() != nil {
				return last, fmt.Errorf("stopped following job %s of %s at %d of %d entries (it goes on in the node): %w", id, name, last.Done, last.Total, ctx.Err())
			}
			return last, err
		}
		last = j
		if o.progress != nil {
			o.progress(j)
		}
		if j.Finished() {
			return j, nil
		}
		t := time.NewTimer(o.poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return last, fmt.Errorf("stopped following job %s of %s at %d of %d entries (it goes on in the node): %w", id, name, last.Done, last.Total, ctx.Err())
		}
	}
}

// DeadLetterTopics returns the named handler's dead-letter topics: its
// current one (none if it was deleted) and those it left, which InTopic
// can name.
func (c *Client) DeadLetterTopics(ctx context.Context, name string) (api.DeadLetterTopics, error) {
	var t api.DeadLetterTopics
	if name == "" {
		return t, errors.New("listing dead-letter topics: the handler name is empty")
	}
	_, err := c.do(ctx, http.MethodGet, dlqPath(name)+"/topics", nil, &t)
	return t, err
}

// DiscardDeadLetter marks one entry discarded (with its duplicate
// records). If there is no such handler or entry, the error satisfies
// IsNotFound.
func (c *Client) DiscardDeadLetter(ctx context.Context, name, id string, opts ...DLQOption) error {
	if name == "" || id == "" {
		return errors.New("discarding dead letter: the handler name or the entry id is empty")
	}
	_, err := c.do(ctx, http.MethodDelete, dlqOpts(opts).path(dlqPath(name)+"/"+url.PathEscape(id)), nil, nil)
	return err
}

// checkSelection refuses what the server would refuse, without a request.
func checkSelection(doing, name string, sel api.Selection) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: the handler name is empty", doing)
	case sel.All && len(sel.IDs) > 0:
		return fmt.Errorf("%s of %s: select entries by id or all of them, not both", doing, name)
	case !sel.All && len(sel.IDs) == 0:
		return fmt.Errorf("%s of %s: no entries selected (give ids, or all)", doing, name)
	}
	return nil
}

func dlqPath(name string) string { return handlerPath(name) + "/dlq" }
