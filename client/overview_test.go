package client_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/client"
)

func TestOverview(t *testing.T) {
	// The body as the server writes it: every field of both types named, so
	// a renamed json tag on either side fails here.
	body := `{"node":{"id":"node-a","brokers":["kafka-0:9092","kafka-1:9092"],"embedded":false,` +
		`"startedAt":"2026-03-01T12:00:00Z","version":"v1.2.0"},` +
		`"handlers":[{"name":"orders","topic":"orders","invoker":"http://svc/hook","state":"running","paused":false,` +
		`"breakerState":"closed","rateIn":120.5,"rateOut":118.25,"errorRate":0.5,"p50Ms":3.2,"p99Ms":48.7,"lag":1520,` +
		`"oldestAgeSeconds":65.2,"concurrencyLimit":16,"inFlight":12,"deadLettered":3,"succeeded":9001,"failed":7}]}`
	f := newFake(t, map[string]reply{"GET /v1/overview": {200, body}})
	got, err := newClient(t, f.URL).Overview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := api.Overview{
		Node: api.NodeInfo{ID: "node-a", Brokers: []string{"kafka-0:9092", "kafka-1:9092"},
			StartedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Version: "v1.2.0"},
		Handlers: []api.HandlerOverview{{
			Name: "orders", Topic: "orders", Invoker: "http://svc/hook", State: "running", BreakerState: "closed",
			RateIn: 120.5, RateOut: 118.25, ErrorRate: 0.5, P50Ms: 3.2, P99Ms: 48.7, Lag: 1520, OldestAgeSeconds: 65.2,
			ConcurrencyLimit: 16, InFlight: 12, DeadLettered: 3, Succeeded: 9001, Failed: 7,
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Overview =\n%+v\nwant\n%+v", got, want)
	}
	reqs := f.requests()
	if len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].Path != "/v1/overview" || reqs[0].Body != "" {
		t.Errorf("requests = %+v, want one GET /v1/overview without a body", reqs)
	}
}

func TestOverviewErrors(t *testing.T) {
	t.Run("server error", func(t *testing.T) {
		f := newFake(t, map[string]reply{"GET /v1/overview": {500, `{"error":"sampler stopped"}`}})
		_, err := newClient(t, f.URL).Overview(context.Background())
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 500 || err.Error() != "sampler stopped" {
			t.Fatalf("error = %v (%T), want an *APIError 500 \"sampler stopped\"", err, err)
		}
	})
	t.Run("behind a path prefix", func(t *testing.T) {
		f := newFake(t, map[string]reply{"GET /sluice/v1/overview": {200, `{"node":{"id":"n"},"handlers":[]}`}})
		got, err := newClient(t, f.URL+"/sluice/").Overview(context.Background())
		if err != nil || got.Node.ID != "n" || got.Handlers == nil || len(got.Handlers) != 0 {
			t.Fatalf("Overview = %+v, %v", got, err)
		}
	})
	t.Run("not the API", func(t *testing.T) {
		f := newFake(t, map[string]reply{"GET /v1/overview": {200, "<html>hello</html>"}})
		_, err := newClient(t, f.URL).Overview(context.Background())
		var ae *client.APIError
		if err == nil || errors.As(err, &ae) {
			t.Fatalf("error = %v, want a decoding error", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		f := newFake(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := newClient(t, f.URL).Overview(ctx)
		var ue *client.UnreachableError
		if !errors.Is(err, context.Canceled) || errors.As(err, &ue) {
			t.Fatalf("error = %v, want context.Canceled and not an UnreachableError", err)
		}
	})
}
