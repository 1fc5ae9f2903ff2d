// Package consumers is the engine: it pulls a handler's topic through a
// Source (Kafka first), dispatches messages under the handler's ordering and
// concurrency limit, and commits each partition only past messages that
// have all reached a final outcome. Where a message goes after it is
// fetched is all in runner.go.
package consumers
