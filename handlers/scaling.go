package handlers

import (
	"fmt"
	"time"
)

// Scaling defaults and bounds (docs/configuration.md).
const (
	DefaultScalingMaxAge   = 60 * time.Second
	DefaultScalingMinNodes = 1
	DefaultScalingMaxNodes = 10
	// MaxScalingNodes caps maxNodes: a fleet larger than this is a
	// misconfiguration more often than a need.
	MaxScalingNodes = 1000
	// MinScalingMaxAge is the shortest maxAge: the sampler measures the
	// oldest message's age every few seconds.
	MinScalingMaxAge = time.Second
)

// ScalingSpec says how many nodes the fleet needs for this handler. Each
// node computes it from the backlog, the arrival rate and its own
// throughput; the fleet's desired size, the largest over the handlers, is
// served to an autoscaler (KEDA's external scaler, the metrics).
type ScalingSpec struct {
	// MaxAge is the age of the oldest unprocessed message the handler
	// should stay under: the backlog is to be drained within it. Default
	// 60s; at least 1s.
	MaxAge Duration `json:"maxAge,omitempty" sluice:"nonzero"`
	// MinNodes is the fewest nodes the handler asks for. Default 1; 0
	// lets an external-Kafka fleet scale to zero when nothing waits.
	MinNodes *int `json:"minNodes,omitempty"`
	// MaxNodes is the most nodes the handler asks for. Default 10; at most
	// 1000.
	MaxNodes int `json:"maxNodes,omitempty" sluice:"nonzero"`
}

// Min is MinNodes with its default.
func (s *ScalingSpec) Min() int {
	if s == nil || s.MinNodes == nil {
		return DefaultScalingMinNodes
	}
	return *s.MinNodes
}

func (s *Spec) normalizeScaling() {
	if s.Scaling == nil {
		s.Scaling = &ScalingSpec{}
	}
	sc := s.Scaling
	if sc.MaxAge == 0 {
		sc.MaxAge = Duration(DefaultScalingMaxAge)
	}
	if sc.MinNodes == nil {
		n := DefaultScalingMinNodes
		sc.MinNodes = &n
	}
	if sc.MaxNodes == 0 {
		sc.MaxNodes = max(DefaultScalingMaxNodes, *sc.MinNodes)
	}
}

func (s *Spec) validateScaling() error {
	sc := s.Scaling
	switch {
	case sc.MaxAge.D() < MinScalingMaxAge || sc.MaxAge.D() > 24*time.Hour:
		return &FieldError{Field: "scaling.maxAge", Msg: fmt.Sprintf("must be between %s and 24h, got %s", MinScalingMaxAge, sc.MaxAge.D())}
	case *sc.MinNodes < 0:
		return &FieldError{Field: "scaling.minNodes", Msg: fmt.Sprintf("must not be negative, got %d", *sc.MinNodes)}
	case sc.MaxNodes < 1 || sc.MaxNodes > MaxScalingNodes:
		return &FieldError{Field: "scaling.maxNodes", Msg: fmt.Sprintf("must be between 1 and %d, got %d", MaxScalingNodes, sc.MaxNodes)}
	case *sc.MinNodes > sc.MaxNodes:
		return &FieldError{Field: "scaling.minNodes", Msg: fmt.Sprintf("must be at most scaling.maxNodes (%d), got %d", sc.MaxNodes, *sc.MinNodes)}
	}
	return nil
}
