// Command crasher is a Sluice node with one Go handler compiled in, for the
// crash-loop test (e2e/crashloop_test.go): the handler kills its own
// process with SIGKILL on the message "poison", and forwards every other
// message to the HTTP endpoint $CRASHER_SINK with its id as Ce-Id.
package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicehq/sluice"
)

func main() {
	cfg := sluice.DefaultConfig()
	cfg.SessionTimeout = 3 * time.Second
	cfg.CommitInterval = 200 * time.Millisecond
	app, err := sluice.New(sluice.WithConfig(cfg), sluice.WithBrokers(os.Getenv("CRASHER_BROKERS")),
		sluice.WithHTTPAddr(os.Getenv("CRASHER_HTTP_ADDR")),
		sluice.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sink := os.Getenv("CRASHER_SINK")
	spec := sluice.Spec{Name: "crasher", Topic: "crash-topic", Concurrency: sluice.Fixed(8),
		Retry: &sluice.RetrySpec{MaxAttempts: 3}}
	err = app.Handle(spec, func(ctx context.Context, m *sluice.Message) error {
		if string(m.Value) == "poison" {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		req, err := http.NewRequestWithContext(ctx, "POST", sink, bytes.NewReader(m.Value))
		if err != nil {
			return err
		}
		req.Header.Set("Ce-Id", m.ID())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("sink: HTTP %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
