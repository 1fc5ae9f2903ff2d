package client

import (
	"context"
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
func (c *Client) ListDeadLetters(ctx context.Context, name string, f api.DeadLetterFilter) (api.DeadLetterPage, error) {
	var p api.DeadLetterPage
	if name == "" {
		return p, errors.New("listing dead letters: the handler name is empty")
	}
	path := dlqPath(name)
	if q := filterQuery(f).Encode(); q != "" {
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
func (c *Client) GetDeadLetter(ctx context.Context, name, id string) (api.DeadLetter, error) {
	var e api.DeadLetter
	if name == "" || id == "" {
		return e, errors.New("getting dead letter: the handler name or the entry id is empty")
	}
	_, err := c.do(ctx, http.MethodGet, dlqPath(name)+"/"+url.PathEscape(id), nil, &e)
	return e, err
}

// ReplayDeadLetters delivers the selected entries again to the named
// handler alone and marks them replayed. sel names entries by id, or sets
// All for every entry in state dead; exactly one of the two, else nothing
// is sent. It returns how many entries were replayed. An unknown handler
// or id is an error that satisfies IsNotFound, and then nothing is
// replayed.
func (c *Client) ReplayDeadLetters(ctx context.Context, name string, sel api.Selection) (int, error) {
	if err := checkSelection("replaying dead letters", name, sel); err != nil {
		return 0, err
	}
	var r api.ReplayResponse
	_, err := c.do(ctx, http.MethodPost, dlqPath(name)+"/replay", sel, &r)
	return r.Replayed, err
}

// PurgeDeadLetters marks the selected entries discarded, so that listings
// filtered on state dead and replays of All skip them. sel is as for
// ReplayDeadLetters. It returns how many entries were discarded.
func (c *Client) PurgeDeadLetters(ctx context.Context, name string, sel api.Selection) (int, error) {
	if err := checkSelection("discarding dead letters", name, sel); err != nil {
		return 0, err
	}
	var r api.PurgeResponse
	_, err := c.do(ctx, http.MethodPost, dlqPath(name)+"/purge", sel, &r)
	return r.Discarded, err
}

// DiscardDeadLetter marks one entry discarded. If there is no such handler
// or entry, the error satisfies IsNotFound.
func (c *Client) DiscardDeadLetter(ctx context.Context, name, id string) error {
	if name == "" || id == "" {
		return errors.New("discarding dead letter: the handler name or the entry id is empty")
	}
	_, err := c.do(ctx, http.MethodDelete, dlqPath(name)+"/"+url.PathEscape(id), nil, nil)
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
