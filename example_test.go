package sluice_test

import (
	"context"
	"errors"
	"time"

	"github.com/sluicehq/sluice"
)

// A Go handler needs only the sluice package: the spec, its policies and
// their values are all re-exported there.
func Example() {
	app, err := sluice.New(sluice.WithBrokers("127.0.0.1:9092"))
	if err != nil {
		panic(err)
	}
	spec := sluice.Spec{
		Name:        "billing",
		Topic:       "orders",
		Ordering:    sluice.OrderingPartition,
		StartFrom:   sluice.StartLatest,
		Concurrency: sluice.Adaptive(1, 64),
		Retry:       &sluice.RetrySpec{MaxAttempts: 5, Mode: sluice.RetryInPlace},
		Timeout:     sluice.Duration(5 * time.Second),
	}
	err = app.Handle(spec, func(ctx context.Context, m *sluice.Message) error {
		if len(m.Value) == 0 {
			return sluice.Permanent(errors.New("empty order"))
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	// app.Run(ctx) consumes until ctx is done.
}
