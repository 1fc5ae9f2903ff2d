package scaler_test

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/scaler"
)

// fleet is the scaler's source: two handlers with what they need.
type fleet map[string]struct {
	desired int
	active  bool
}

func (f fleet) FleetDesired(handler string) (int, bool, bool) {
	if handler != "" {
		h, ok := f[handler]
		return h.desired, h.active, ok
	}
	d, a := 0, false
	for _, h := range f {
		d, a = max(d, h.desired), a || h.active
	}
	return d, a, len(f) > 0
}

// grpcurl, a third party's gRPC client, finds the service by reflection and
// calls it as KEDA would.
func TestExternalScalerThroughGrpcurl(t *testing.T) {
	bin, err := exec.LookPath("grpcurl")
	if err != nil {
		t.Fatalf("this test needs grpcurl (.ci/run installs it: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := fleet{"orders": {desired: 3, active: true}, "emails": {desired: 1}}
	go func() { _ = scaler.New(src).Serve(ctx, l, testkit.Logger()) }()
	addr := l.Addr().String()
	call := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"-plaintext"}, append(args[:len(args)-1:len(args)-1], addr, args[len(args)-1])...)...).CombinedOutput()
		return string(out), err
	}

	out, err := call("list")
	if err != nil || !strings.Contains(out, "externalscaler.ExternalScaler") {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	metric := func(handler string) (float64, string, error) {
		d := `{"scaledObjectRef":{"name":"sluice"}, "metricName":"sluice-desired-nodes"}`
		if handler != "" {
			d = `{"scaledObjectRef":{"name":"sluice","scalerMetadata":{"handler":"` + handler + `"}}, "metricName":"sluice-desired-nodes"}`
		}
		out, err := call("-d", d, "externalscaler.ExternalScaler/GetMetrics")
		if err != nil {
			return 0, out, err
		}
		var resp struct {
			MetricValues []struct {
				MetricName       string  `json:"metricName"`
				MetricValueFloat float64 `json:"metricValueFloat"`
			} `json:"metricValues"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.MetricValues) != 1 || resp.MetricValues[0].MetricName != scaler.MetricName {
			return 0, out, err
		}
		return resp.MetricValues[0].MetricValueFloat, out, nil
	}
	for h, want := range map[string]float64{"": 3, "orders": 3, "emails": 1} {
		if got, out, err := metric(h); err != nil || got != want {
			t.Errorf("GetMetrics handler %q: %v, want %v (%v)\n%s", h, got, want, err, out)
		}
	}
	out, err = call("-d", `{"name":"sluice"}`, "externalscaler.ExternalScaler/GetMetricSpec")
	if err != nil || !strings.Contains(out, `"targetSizeFloat": 1`) {
		t.Errorf("GetMetricSpec: %v\n%s", err, out)
	}
	out, err = call("-d", `{"name":"sluice","scalerMetadata":{"handler":"emails"}}`, "externalscaler.ExternalScaler/IsActive")
	if err != nil || strings.Contains(out, `"result": true`) {
		t.Errorf("IsActive for an idle handler: %v\n%s", err, out)
	}
	out, err = call("-d", `{"name":"sluice"}`, "externalscaler.ExternalScaler/IsActive")
	if err != nil || !strings.Contains(out, `"result": true`) {
		t.Errorf("IsActive for the fleet with a backlog: %v\n%s", err, out)
	}
	// Bad input: a handler this node does not have.
	out, err = call("-d", `{"name":"sluice","scalerMetadata":{"handler":"nope"}}`, "externalscaler.ExternalScaler/IsActive")
	if err == nil || !strings.Contains(out, "NotFound") || !strings.Contains(out, `scalerMetadata.handler: no handler "nope"`) {
		t.Errorf("an unknown handler: %v\n%s", err, out)
	}
}

// A taken address fails with the flag's name.
func TestListenOnATakenAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = scaler.Listen(l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "--scaler-addr "+l.Addr().String()) {
		t.Fatalf("got %v, want an error naming --scaler-addr", err)
	}
}
