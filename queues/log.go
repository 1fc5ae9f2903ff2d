package queues

import (
	"log/slog"
	"net/url"

	"github.com/ThreeDotsLabs/watermill"
)

// wmLogger passes the adapters' logs to log, one level down: what they
// log as info (every subscription, every close) is detail to Sluice.
func wmLogger(log *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	})
}

// redactURL is u without its password, for errors and logs.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable url)"
	}
	return p.Redacted()
}
