package cli_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/internal/cli"
)

func TestHealthcheck(t *testing.T) {
	var sick atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	run := func() (int, string) {
		var out bytes.Buffer
		code := cli.Run(context.Background(), []string{"healthcheck", "--url", srv.URL + "/healthz"}, cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }})
		return code, out.String()
	}
	if code, out := run(); code != 0 {
		t.Fatalf("healthy: exit %d: %s", code, out)
	}
	sick.Store(true)
	if code, out := run(); code == 0 || !strings.Contains(out, "503") {
		t.Fatalf("unhealthy: exit %d: %s", code, out)
	}
}
