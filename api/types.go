// Package api is Sluice's HTTP API: handler registration, publishing,
// topics, health. The JSON shapes here are shared by the server and the Go
// client (package client).
package api

import (
	"encoding/json"
	"time"

	"github.com/sluicehq/sluice/handlers"
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
	// State is running, breaker-open, paused, starting, rejoining (the
	// group is re-forming after a member came or went), stalled (rejoining
	// for longer than the stall bound), error, unavailable (a Go handler
	// not compiled into this node) or stopped; StateSince says since when.
	State string `json:"state"`
	RunnerStatus
	// Source is the kind of queue consumed: kafka, nats, amqp, redis or
	// postgres.
	Source string `json:"source"`
	// Lag is, on Kafka, the sum over partitions of log end minus committed
	// offset; on a queue, the messages not yet delivered to the handler
	// (-1 when the queue does not answer).
	Lag int64 `json:"lag"`
	// Unacked is, on a queue, the messages delivered to the handler and
	// not yet acknowledged (-1 when the queue cannot tell: RabbitMQ,
	// PostgreSQL). Always 0 on Kafka.
	Unacked int64 `json:"unacked,omitempty"`
	// OldestAgeSeconds is the age of the oldest message not yet processed,
	// from the last sample (0 when there is no lag).
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
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
	Results []Produced `json:"results"`
}

// TopicList is GET /v1/topics.
type TopicList struct {
	Topics []TopicInfo `json:"topics"`
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

// Overview is GET /v1/overview: every handler at a glance, as the dashboard
// and `sluice status` show it. Rates are per second over the last sample
// interval; latencies are of invocations finished in it.
type Overview struct {
	Node     NodeInfo          `json:"node"`
	Handlers []HandlerOverview `json:"handlers"`
}

// NodeInfo describes the node that answered.
type NodeInfo struct {
	ID        string    `json:"id"`
	Brokers   []string  `json:"brokers"`
	Embedded  bool      `json:"embedded"`
	StartedAt time.Time `json:"startedAt"`
	Version   string    `json:"version"`
}

// HandlerOverview is one row of the overview.
type HandlerOverview struct {
	Name    string `json:"name"`
	Source  string `json:"source"` // kafka, nats, amqp, redis or postgres
	Topic   string `json:"topic"`
	Invoker string `json:"invoker"` // the URL, or "go"
	// State is running, paused, breaker-open, starting, rejoining,
	// stalled, error or unavailable.
	State string `json:"state"`
	// StateSince is when the state began (how long a handler has been
	// rejoining, say); zero when not known.
	StateSince   time.Time `json:"stateSince,omitempty"`
	Paused       bool      `json:"paused"`
	BreakerState string    `json:"breakerState"`
	RateIn       float64   `json:"rateIn"`
	RateOut      float64   `json:"rateOut"`
	ErrorRate    float64   `json:"errorRate"` // failed invocations per second
	P50Ms        float64   `json:"p50Ms"`
	P99Ms        float64   `json:"p99Ms"`
	// Lag is, on Kafka, the group's lag; on a queue, what the queue says
	// is not yet delivered to the handler's group (-1 when it does not
	// answer).
	Lag int64 `json:"lag"`
	// Unacked is, on a queue, the messages delivered to the handler's
	// group and not yet acknowledged; -1 when the queue does not say.
	Unacked int64 `json:"unacked,omitempty"`
	// OldestAgeSeconds is the age of the oldest message not yet processed
	// (0 when there is no lag).
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
	ConcurrencyLimit int     `json:"concurrencyLimit"`
	InFlight         int     `json:"inFlight"`
	DeadLettered     uint64  `json:"deadLettered"`
	Succeeded        uint64  `json:"succeeded"`
	Failed           uint64  `json:"failed"`
}

// Series is GET /v1/handlers/{name}/series: this node's samples of a
// handler, oldest first, one per IntervalSeconds, for the last 15 minutes
// or more.
type Series struct {
	IntervalSeconds float64       `json:"intervalSeconds"`
	Points          []SeriesPoint `json:"points"`
}

// SeriesPoint is one sample.
type SeriesPoint struct {
	Time             time.Time `json:"t"`
	RateIn           float64   `json:"rateIn"`
	RateOut          float64   `json:"rateOut"`
	ErrorRate        float64   `json:"errorRate"`
	P50Ms            float64   `json:"p50Ms"`
	P99Ms            float64   `json:"p99Ms"`
	Lag              int64     `json:"lag"`
	OldestAgeSeconds float64   `json:"oldestAgeSeconds"`
	ConcurrencyLimit int       `json:"concurrencyLimit"`
	InFlight         int       `json:"inFlight"`
}

// PartitionList is GET /v1/handlers/{name}/partitions: every partition of
// the handler's topics across the fleet.
type PartitionList struct {
	Partitions []PartitionInfo `json:"partitions"`
}

// PartitionInfo is one partition of a handler's topic.
type PartitionInfo struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	// Owner is the fleet member consuming it ("" when unassigned).
	Owner     string `json:"owner"`
	Committed int64  `json:"committed"` // -1 when nothing is committed
	LogStart  int64  `json:"logStart"`
	LogEnd    int64  `json:"logEnd"`
	Lag       int64  `json:"lag"`
	// Pending counts the fetched messages not yet behind the commit
	// position; it is known only for partitions this node owns (0 for the
	// others).
	Pending int `json:"pending"`
}

// MemberData is what a node publishes about itself in each consumer group
// it joins (the subscription's user data), so that any node can list the
// fleet.
type MemberData struct {
	Node    string `json:"node"`
	API     string `json:"api,omitempty"`
	Version string `json:"version,omitempty"`
}

// Fleet is GET /v1/fleet: the live nodes, as the consumer groups of the
// registered handlers see them, and each group's state.
type Fleet struct {
	// Node is the node that answered.
	Node string `json:"node"`
	// Nodes are the members of any handler's group, and the node that
	// answered; a node that runs no handler is not seen by the others.
	Nodes  []FleetNode  `json:"nodes"`
	Groups []FleetGroup `json:"groups"`
	// DesiredNodes is how many nodes the fleet needs: the most any
	// handler needs (see FleetGroup.DesiredNodes). The autoscaler's
	// answer (KEDA's external scaler, sluice_fleet_desired_nodes).
	DesiredNodes int `json:"desiredNodes"`
	// History is the fleet's size and desired size over the last 15
	// minutes, oldest first, one point per sample.
	History []FleetPoint `json:"history"`
}

// FleetPoint is the fleet at one sample: the nodes in the handlers' groups
// (the most in any one group) and the desired size.
type FleetPoint struct {
	Time    time.Time `json:"time"`
	Nodes   int       `json:"nodes"`
	Desired int       `json:"desired"`
}

// FleetNode is one live node.
type FleetNode struct {
	ID       string         `json:"id"`
	API      string         `json:"api,omitempty"`
	Version  string         `json:"version,omitempty"`
	Host     string         `json:"host,omitempty"`
	Handlers []FleetHandler `json:"handlers"`
}

// FleetHandler is a handler a node is a member for, with the partitions it
// owns in the current generation ("topic/partition").
type FleetHandler struct {
	Name       string   `json:"name"`
	Partitions []string `json:"partitions"`
}

// FleetGroup is one handler's consumer group as the coordinator sees it.
type FleetGroup struct {
	Handler string `json:"handler"`
	Group   string `json:"group"`
	// State is the coordinator's: Stable, PreparingRebalance,
	// CompletingRebalance, Empty or Dead; "unknown" when it did not answer.
	State   string `json:"state"`
	Members int    `json:"members"`
	Error   string `json:"error,omitempty"`
	// DesiredNodes is how many nodes this handler needs, from its backlog,
	// arrival rate and per-node throughput against scaling.maxAge;
	// DesiredReason says why in words.
	DesiredNodes  int    `json:"desiredNodes"`
	DesiredReason string `json:"desiredReason,omitempty"`
}
