// Package scaler serves KEDA's external-scaler gRPC service
// (externalscaler.ExternalScaler) from a node: the fleet's desired size,
// as each node computes it from the backlog, the arrival rate and the
// measured per-node throughput (metrics/scaling.go), so that KEDA and the
// HPA size the fleet. gRPC server reflection is on, so grpcurl can call it.
//
// The answer is a number of nodes with a target of 1 per node: the HPA's
// formula, ceil(value / target), gives the desired size itself.
package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// MetricName is the metric the scaler reports: desired nodes, target 1.
const MetricName = "sluice-desired-nodes"

// Source answers for the fleet, or for one handler when handler is set.
type Source interface {
	// FleetDesired returns the desired number of nodes; active reports
	// whether any message waits. found is false for an unknown handler.
	FleetDesired(handler string) (desired int, active, found bool)
}

// Server is the external scaler.
type Server struct {
	externalscaler.UnimplementedExternalScalerServer
	src Source
	// StreamEvery is how often StreamIsActive checks for a change.
	StreamEvery time.Duration
}

// New returns a scaler answering from src.
func New(src Source) *Server { return &Server{src: src, StreamEvery: 2 * time.Second} }

// handler is the scalerMetadata.handler of a request, validated.
func (s *Server) answer(ref *externalscaler.ScaledObjectRef) (int, bool, error) {
	h := ""
	if ref != nil {
		h = ref.ScalerMetadata["handler"]
	}
	if len(h) > 63 {
		return 0, false, status.Error(codes.InvalidArgument, "scalerMetadata.handler: longer than a handler name can be")
	}
	d, active, found := s.src.FleetDesired(h)
	if h != "" && !found {
		return 0, false, status.Errorf(codes.NotFound, "scalerMetadata.handler: no handler %q on this node", h)
	}
	return d, active, nil
}

// IsActive is true while any message waits or any handler's minNodes is
// above 0: only then may KEDA scale an external-Kafka fleet to zero.
func (s *Server) IsActive(_ context.Context, ref *externalscaler.ScaledObjectRef) (*externalscaler.IsActiveResponse, error) {
	_, active, err := s.answer(ref)
	if err != nil {
		return nil, err
	}
	return &externalscaler.IsActiveResponse{Result: active}, nil
}

// StreamIsActive sends IsActive whenever it changes, and the first answer
// at once.
func (s *Server) StreamIsActive(ref *externalscaler.ScaledObjectRef, stream externalscaler.ExternalScaler_StreamIsActiveServer) error {
	t := time.NewTicker(s.StreamEvery)
	defer t.Stop()
	first, last := true, false
	for {
		_, active, err := s.answer(ref)
		if err != nil {
			return err
		}
		if first || active != last {
			if err := stream.Send(&externalscaler.IsActiveResponse{Result: active}); err != nil {
				return err
			}
			first, last = false, active
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-t.C:
		}
	}
}

// GetMetricSpec names the metric and its target: one per node.
func (s *Server) GetMetricSpec(_ context.Context, ref *externalscaler.ScaledObjectRef) (*externalscaler.GetMetricSpecResponse, error) {
	if _, _, err := s.answer(ref); err != nil {
		return nil, err
	}
	return &externalscaler.GetMetricSpecResponse{MetricSpecs: []*externalscaler.MetricSpec{
		{MetricName: MetricName, TargetSize: 1, TargetSizeFloat: 1},
	}}, nil
}

// GetMetrics returns the desired number of nodes.
func (s *Server) GetMetrics(_ context.Context, req *externalscaler.GetMetricsRequest) (*externalscaler.GetMetricsResponse, error) {
	d, _, err := s.answer(req.GetScaledObjectRef())
	if err != nil {
		return nil, err
	}
	return &externalscaler.GetMetricsResponse{MetricValues: []*externalscaler.MetricValue{
		{MetricName: MetricName, MetricValue: int64(d), MetricValueFloat: float64(d)},
	}}, nil
}

// Listen binds addr, so that a taken address fails the node's start with a
// clear error before anything else runs.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--scaler-addr %s: %w", addr, err)
	}
	return l, nil
}

// Serve serves the scaler on l until ctx is done.
func (s *Server) Serve(ctx context.Context, l net.Listener, log *slog.Logger) error {
	g := grpc.NewServer()
	externalscaler.RegisterExternalScalerServer(g, s)
	reflection.Register(g)
	go func() {
		<-ctx.Done()
		g.Stop() // StreamIsActive streams last as long as KEDA keeps them
	}()
	log.Info("KEDA external scaler listening", "addr", l.Addr().String())
	if err := g.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
