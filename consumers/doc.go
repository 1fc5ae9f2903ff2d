// Package consumers is the engine: it pulls a handler's topic through a
// Source (Kafka first), dispatches messages under the handler's ordering and
// concurrency limit, and commits each partition only past messages that
// have all reached a final outcome.
//
// Where things are:
//   - source.go: the Source interface; kafka.go implements it on Kafka, and
//     group.go is the member of the handler's consumer group.
//   - runner.go: sessions (one per assignment), fetch loops, dispatch,
//     commits, the drain and the final commit.
//   - process.go: one message's way from invocation to outcome: retries,
//     the breaker, dead-lettering and parking.
//   - retry.go (classification, backoff), breaker.go, adaptive.go
//     (adaptive concurrency), gate.go (the held and running bounds),
//     tracker.go (commit positions), batch.go, deadletter.go (the
//     dead-letter and park interfaces), workers.go (the worker pool).
package consumers
