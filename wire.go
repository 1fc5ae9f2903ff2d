package sluice

import (
	"errors"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/dlq"
	"github.com/sluicehq/sluice/topics"
)

// wire.go converts the node's parts' types to and from the API's wire types
// (package api owns those, so that the client links no Kafka code).

func runnerStatus(st consumers.Status) api.RunnerStatus {
	out := api.RunnerStatus{
		StateSince: st.StateSince, LastError: st.LastError, InFlight: st.InFlight, InFlightBytes: st.InFlightBytes,
		Held: st.Held, Limit: st.Limit, Received: st.Received, Succeeded: st.Succeeded, Failed: st.Failed,
		Retried: st.Retried, DeadLettered: st.DeadLettered, Parked: st.Parked, Replayed: st.Replayed,
		Commits: st.Commits, CommitErrs: st.CommitErrs, Rebalances: st.Rebalances,
		Partitions: make([]api.PartitionStatus, len(st.Partitions)),
	}
	if b := st.Breaker; b != nil {
		out.Breaker = &api.BreakerStatus{State: b.State, ChangedAt: b.ChangedAt, Opened: b.Opened}
	}
	for i, p := range st.Partitions {
		out.Partitions[i] = api.PartitionStatus(p)
	}
	return out
}

func toRecords(recs []api.Record) []topics.Record {
	out := make([]topics.Record, len(recs))
	for i, r := range recs {
		out[i] = topics.Record{Key: r.Key, Value: r.Value, Partition: r.Partition}
		if len(r.Headers) > 0 {
			out[i].Headers = make([]kafka.Header, len(r.Headers))
			for j, h := range r.Headers {
				out[i].Headers[j] = kafka.Header{Key: h.Key, Value: h.Value}
			}
		}
	}
	return out
}

func produced(ps []topics.Produced) []api.Produced {
	out := make([]api.Produced, len(ps))
	for i, p := range ps {
		out[i] = api.Produced(p)
	}
	return out
}

func topicInfos(is []topics.Info) []api.TopicInfo {
	out := make([]api.TopicInfo, len(is))
	for i, t := range is {
		out[i] = api.TopicInfo(t)
	}
	return out
}

func deadLetter(e dlq.Entry) api.DeadLetter {
	return api.DeadLetter{
		ID: e.ID, Handler: e.Handler, Key: e.Key, KeyBase64: e.KeyBase64, Error: e.Error, Status: e.Status,
		Attempts: e.Attempts, SourceTopic: e.SourceTopic, SourcePartition: e.SourcePartition, SourceOffset: e.SourceOffset,
		FirstFailure: e.FirstFailure, LastFailure: e.LastFailure, State: e.State, StateChangedAt: e.StateChangedAt,
		Value: e.Value, ValueBase64: e.ValueBase64, Headers: e.Headers,
	}
}

func deadLetterPage(p dlq.Page) api.DeadLetterPage {
	out := api.DeadLetterPage{Entries: make([]api.DeadLetter, len(p.Entries)), Total: p.Total, Next: p.Next}
	for i, e := range p.Entries {
		out.Entries[i] = deadLetter(e)
	}
	return out
}

// apiError keeps err's text and makes it match the API error kind, so the
// server answers with kind's status.
type apiError struct {
	err  error
	kind error
}

func (e *apiError) Error() string        { return e.err.Error() }
func (e *apiError) Unwrap() error        { return e.err }
func (e *apiError) Is(target error) bool { return target == e.kind }

// asAPIError maps the parts' errors to the API's kinds.
func asAPIError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, topics.ErrTopicExists):
		return &apiError{err, api.ErrTopicExists}
	case errors.Is(err, topics.ErrNoPartition):
		return &apiError{err, api.ErrNoPartition}
	case errors.Is(err, dlq.ErrNotFound):
		return &apiError{err, api.ErrNotFound}
	}
	return err
}
