package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/handlers"
)

// The http family's peers: the same Sluice HTTP handler, one message per
// request and batched.
const (
	peerHTTPSingle = "http-single"
	peerHTTPBatch  = "http-batch"
)

var httpPeers = []string{peerHTTPSingle, peerHTTPBatch}

const (
	// httpConcurrency is the HTTP handler's in-flight limit, in messages.
	httpConcurrency = 256
	// httpBatchSize and httpBatchWindow are the batched variant's
	// batch: {size: 100, window: 20ms}.
	httpBatchSize   = 100
	httpBatchWindow = 20 * time.Millisecond
)

// runSluiceHTTP runs a Sluice node with one HTTP handler (ordering none)
// whose endpoint is a no-op server in this process. The server counts the
// messages it receives, so a message counts once its request has arrived
// (a batch's size is its Sluice-Batch-Size header). Like runSluice, the
// clock starts once the node has started, so registering the handler and
// joining the group are counted.
func runSluiceHTTP(ctx context.Context, c consumeSpec, batch bool) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	srv := &http.Server{Handler: noopEndpoint(c.handleN), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	err = runHTTPNode(ctx, c, "http://"+ln.Addr().String()+"/", batch)

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("stopping the endpoint: %w", serr))
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("endpoint: %w", serr))
	}
	return err
}

// noopEndpoint answers every request 200 with an empty body, after reading
// the body, and counts the messages it carried.
func noopEndpoint(count func(n int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n := 1
		if v := r.Header.Get("Sluice-Batch-Size"); v != "" {
			if k, err := strconv.Atoi(v); err == nil && k > 0 {
				n = k
			}
		}
		w.WriteHeader(http.StatusOK)
		count(n)
	})
}

// runHTTPNode runs the node until ctx is done, with the http family's
// handler (ordering none) invoking url.
func runHTTPNode(ctx context.Context, c consumeSpec, url string, batch bool) error {
	fields := map[string]any{"name": c.name, "topic": c.topic, "ordering": "none", "concurrency": c.concurrency,
		"http": map[string]any{"url": url}}
	if batch {
		fields["batch"] = map[string]any{"size": httpBatchSize, "window": httpBatchWindow.String()}
	}
	return runNode(ctx, c, fields, nil)
}

// runNode runs a node with one handler, built from its JSON fields, until
// ctx is done; while it runs, during (if set) is called and must return
// once ctx is done. The handler is applied once the node has started (as
// the API's PUT would) and deleted before the node stops: the registry
// lives on the shared broker, and a node started later in this run would
// otherwise load the handler and run it too.
func runNode(ctx context.Context, c consumeSpec, fields map[string]any, during func(*client.Client, string)) error {
	app, err := sluice.New(
		sluice.WithBrokers(c.brokers...),
		sluice.WithHTTPAddr("127.0.0.1:0"),
		sluice.WithLogger(c.log),
	)
	if err != nil {
		return err
	}
	// Built from its JSON form, as in runSluice.
	var spec sluice.Spec
	js, _ := json.Marshal(fields)
	if err := json.Unmarshal(js, &spec); err != nil {
		return fmt.Errorf("handler spec: %w", err)
	}

	// The node outlives ctx by the time it takes to delete the handler.
	nodeCtx, stopNode := context.WithCancel(context.WithoutCancel(ctx))
	defer stopNode()
	done := make(chan error, 1)
	go func() { done <- app.Run(nodeCtx) }()
	select {
	case <-app.Started():
		c.started()
	case err := <-done:
		return err
	case <-ctx.Done():
		stopNode()
		return <-done
	}
	// The handler is applied and deleted through the API, as a user does.
	cl, err := client.New("http://" + app.HTTPAddr())
	if err != nil {
		stopNode()
		return errors.Join(err, <-done)
	}
	if err := applyWhenReady(ctx, cl, spec); err != nil {
		stopNode()
		return errors.Join(err, <-done)
	}
	if during != nil {
		during(cl, spec.Name)
	}
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err = cl.DeleteHandler(dctx, spec.Name)
	cancel()
	if err != nil {
		err = fmt.Errorf("deleting handler %s: %w", spec.Name, err)
	}
	stopNode()
	return errors.Join(err, <-done)
}

// applyWhenReady applies spec once the node has loaded its registry.
func applyWhenReady(ctx context.Context, cl *client.Client, spec handlers.Spec) error {
	for {
		_, _, err := cl.ApplyHandler(ctx, spec)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable {
			if err != nil {
				return fmt.Errorf("applying handler %s: %w", spec.Name, err)
			}
			return nil
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
