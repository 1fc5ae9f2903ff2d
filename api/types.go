// Package api is Sluice's HTTP API: handler registration, publishing,
// topics, health. The JSON shapes here are shared by the server and the Go
// client (package client).
package api

import (
	"encoding/json"
	"time"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/topics"
)

// Handler is a registered handler as the API shows it.
type Handler struct {
	Name      string         `json:"name"`
	Spec      handlers.Spec  `json:"spec"`
	Paused    bool           `json:"paused"`
	Version   int64          `json:"version"`
	UpdatedAt time.Time      `json:"updatedAt"`
	Status    *HandlerStatus `json:"status,omitempty"`
}

// HandlerStatus is this node's view of a handler's consumption.
type HandlerStatus struct {
	// State is running, paused, starting, error, unavailable (a Go handler
	// not compiled into this node) or stopped.
	State string `json:"state"`
	consumers.Status
	// Lag is the sum over partitions of log end minus committed offset.
	Lag int64 `json:"lag"`
}

// HandlerList is GET /v1/handlers.
type HandlerList struct {
	Handlers []Handler `json:"handlers"`
}

// PublishRequest is POST /v1/topics/{topic}/messages.
type PublishRequest struct {
	Messages []PublishMessage `json:"messages"`
}

// PublishMessage is one message to publish. Value is a string (sent as its
// UTF-8 bytes) or any other JSON value (sent as its JSON text); ValueBase64
// carries binary values. At most one of them is set.
type PublishMessage struct {
	Key         *string           `json:"key,omitempty"`
	Value       json.RawMessage   `json:"value,omitempty"`
	ValueBase64 string            `json:"valueBase64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Partition   *int              `json:"partition,omitempty"`
}

// PublishResponse lists where each message landed, in request order.
type PublishResponse struct {
	Results []topics.Produced `json:"results"`
}

// TopicList is GET /v1/topics.
type TopicList struct {
	Topics []topics.Info `json:"topics"`
}

// CreateTopicRequest is POST /v1/topics.
type CreateTopicRequest struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
}

// Error is every non-2xx answer's body. Field names the offending input
// field, when there is one.
type Error struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// Health is GET /healthz and GET /readyz.
type Health struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}
