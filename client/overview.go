package client

import (
	"context"
	"net/http"

	"github.com/sluicehq/sluice/api"
)

// Overview returns every handler at a glance as the node that answers sees
// it (GET /v1/overview): rates and latencies over its last sample interval,
// lag, in-flight counts and the node's own identity. Handlers come in the
// server's order; callers that show them sort as they need.
func (c *Client) Overview(ctx context.Context) (api.Overview, error) {
	var o api.Overview
	_, err := c.do(ctx, http.MethodGet, "/v1/overview", nil, &o)
	return o, err
}
