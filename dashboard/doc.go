// Package dashboard is Sluice's web dashboard: a single-page app, embedded
// in the binary with //go:embed, that shows every handler at a glance, a
// handler's charts, partitions and spec, its dead-letter queue (inspect,
// replay, discard), and the topics (browse, publish a test message).
//
// The app is plain HTML, CSS and JavaScript with no build step and nothing
// fetched from elsewhere at run time. It talks only to the JSON API of the
// node that serves it (same origin, under /v1), polling it every one to
// five seconds.
//
// Handler serves the app; the API server mounts it at "/" so that its own
// routes (/v1/..., /metrics, /healthz, /readyz) take precedence.
package dashboard
