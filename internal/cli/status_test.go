package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/cli"
)

// statusOverview has one row per formatting case, out of order: the CLI
// sorts by name.
func statusOverview() api.Overview {
	return api.Overview{
		Node: api.NodeInfo{ID: "node-a", Brokers: []string{"127.0.0.1:9092"}, Embedded: true, StartedAt: fakeTime, Version: "dev"},
		Handlers: []api.HandlerOverview{
			{Name: "orders", Topic: "orders", Invoker: "http://svc/orders", State: "running", BreakerState: "closed",
				RateIn: 120.45, RateOut: 118.2, ErrorRate: 0.25, P50Ms: 3.21, P99Ms: 48.7, Lag: 1520, OldestAgeSeconds: 65.2,
				ConcurrencyLimit: 16, InFlight: 12, DeadLettered: 3, Succeeded: 9001, Failed: 7},
			{Name: "emails", Topic: "emails", Invoker: "http://svc/emails", State: "paused", Paused: true, BreakerState: "closed",
				Lag: 40, OldestAgeSeconds: 3725, ConcurrencyLimit: 8},
			{Name: "billing", Topic: "payments", Invoker: "http://svc/billing", State: "running", BreakerState: "half-open",
				RateIn: 0.04, ErrorRate: 2, P50Ms: 0.45, P99Ms: 12500, OldestAgeSeconds: 4.25,
				ConcurrencyLimit: 4, InFlight: 1, DeadLettered: 1250},
			{Name: "audit", Topic: "audit", Invoker: "http://svc/audit", State: "breaker-open", BreakerState: "open",
				RateIn: 1500, P50Ms: 250, P99Ms: 2345, Lag: 987654, OldestAgeSeconds: 200000, ConcurrencyLimit: 64},
			{Name: "search", Topic: "docs", Invoker: "go", State: "unavailable", BreakerState: "closed", P99Ms: 90000},
		},
	}
}

const statusTable = "" +
	"node node-a, embedded broker at 127.0.0.1:9092, version dev, up since 2026-03-01T12:00:00Z\n" +
	"HANDLER   STATE                         IN/S     OUT/S   ERR/S   P50      P99     LAG      OLDEST   LIMIT   INFLIGHT   DLQ\n" +
	"audit     breaker-open                  1500.0   -       -       250ms    2.35s   987654   2d07h    64      0          0\n" +
	"billing   running (breaker half-open)   0.0      -       2.0     0.45ms   12.5s   0        4.2s     4       1          1250\n" +
	"emails    paused                        -        -       -       -        -       40       1h02m    8       0          0\n" +
	"orders    running                       120.5    118.2   0.2     3.2ms    49ms    1520     1m05s    16      12         3\n" +
	"search    unavailable                   -        -       -       -        1m30s   0        -        -       0          0\n"

func TestStatusTable(t *testing.T) {
	f := newFakeAPI(t)
	f.setOverview(statusOverview())
	r := run(t, f.URL, "", "status")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("code %d, stderr %q", r.code, r.stderr)
	}
	if r.stdout != statusTable {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, statusTable)
	}
	if reqs := f.requests(); len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].Path != "/v1/overview" {
		t.Errorf("requests %+v, want one GET /v1/overview", reqs)
	}
}

func TestStatusNodeLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		node api.NodeInfo
		want string
	}{
		{"external cluster", api.NodeInfo{ID: "sluice-7", Brokers: []string{"kafka-0:9092", "kafka-1:9092"}, StartedAt: fakeTime, Version: "v1.2.0"},
			"node sluice-7, Kafka at kafka-0:9092,kafka-1:9092, version v1.2.0, up since 2026-03-01T12:00:00Z\n"},
		{"start time in UTC", api.NodeInfo{ID: "n", Brokers: []string{"k:9092"}, StartedAt: fakeTime.In(time.FixedZone("CET", 3600))},
			"node n, Kafka at k:9092, up since 2026-03-01T12:00:00Z\n"},
		{"nothing known", api.NodeInfo{}, "node (unnamed), Kafka at -\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			f.setOverview(api.Overview{Node: tc.node}) // handlers: null
			r := run(t, f.URL, "", "status")
			if want := tc.want + "no handlers registered\n"; r.code != 0 || r.stdout != want {
				t.Errorf("code %d, stdout:\n%s\nwant:\n%s", r.code, r.stdout, want)
			}
		})
	}
}

func TestStatusData(t *testing.T) {
	f := newFakeAPI(t)
	f.setOverview(statusOverview())
	want := statusOverview()
	names := []string{"audit", "billing", "emails", "orders", "search"}
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			r := run(t, f.URL, "", "status", "-o", format)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("code %d, stderr %q", r.code, r.stderr)
			}
			var got api.Overview
			var raw map[string]any
			if format == "json" {
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
					t.Fatalf("%v:\n%s", err, r.stdout)
				}
				json.Unmarshal([]byte(r.stdout), &raw)
			} else {
				if err := yamlToAPI(r.stdout, &got); err != nil {
					t.Fatalf("%v:\n%s", err, r.stdout)
				}
				yamlToAPI(r.stdout, &raw)
			}
			var gotNames []string
			for _, h := range got.Handlers {
				gotNames = append(gotNames, h.Name)
			}
			if !reflect.DeepEqual(gotNames, names) {
				t.Errorf("handlers in order %q, want sorted %q", gotNames, names)
			}
			if !reflect.DeepEqual(got.Node, want.Node) {
				t.Errorf("node = %+v, want %+v", got.Node, want.Node)
			}
			for _, w := range want.Handlers {
				for _, g := range got.Handlers {
					if g.Name == w.Name && !reflect.DeepEqual(g, w) {
						t.Errorf("handler %s = %+v, want %+v", w.Name, g, w)
					}
				}
			}
			// The API's field names, so scripts can rely on them.
			node, _ := raw["node"].(map[string]any)
			hs, _ := raw["handlers"].([]any)
			if len(raw) != 2 || node["id"] != "node-a" || node["embedded"] != true || len(hs) != 5 {
				t.Fatalf("shape: %v", raw)
			}
			row, _ := hs[3].(map[string]any)
			for k, v := range map[string]any{"name": "orders", "state": "running", "rateIn": 120.45, "p99Ms": 48.7,
				"lag": 1520.0, "oldestAgeSeconds": 65.2, "concurrencyLimit": 16.0, "inFlight": 12.0, "deadLettered": 3.0} {
				if row[k] != v {
					t.Errorf("handlers[3].%s = %v (%T), want %v", k, row[k], row[k], v)
				}
			}
		})
	}
	t.Run("no handlers is an empty list", func(t *testing.T) {
		f := newFakeAPI(t)
		f.setOverview(api.Overview{Node: api.NodeInfo{ID: "n"}})
		r := run(t, f.URL, "", "status", "-o", "json")
		if r.code != 0 || !strings.Contains(r.stdout, `"handlers": []`) {
			t.Errorf("code %d, stdout:\n%s", r.code, r.stdout)
		}
	})
}

func TestStatusErrors(t *testing.T) {
	t.Run("server error", func(t *testing.T) {
		f := newFakeAPI(t)
		f.overviewStatus = map[int]int{1: 500}
		r := run(t, f.URL, "", "status")
		if r.code != 1 || r.stdout != "" || r.stderr != "error: getting the overview: overview unavailable\n" {
			t.Errorf("%+v", r)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		r := run(t, srv.URL, "", "status", "--watch")
		if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "error: getting the overview: cannot reach the Sluice API at "+srv.URL) {
			t.Errorf("%+v", r)
		}
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--watch", "--interval", "0s"},
			"error: sluice status: --interval must be positive, got 0s (see 'sluice status --help')\n"},
		{[]string{"status", "--interval", "soon"},
			`error: invalid argument "soon" for "--interval" flag: time: invalid duration "soon" (see 'sluice status --help')` + "\n"},
		{[]string{"status", "orders"},
			`error: sluice status: unexpected argument "orders" (see 'sluice status --help')` + "\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f := newFakeAPI(t)
			r := run(t, f.URL, "", tc.args...)
			if r.code != 2 || r.stderr != tc.want {
				t.Errorf("code %d, stderr %q\nwant code 2, stderr %q", r.code, r.stderr, tc.want)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("a usage error sent %d requests", n)
			}
		})
	}
}

// frameWriter is a stdout that cancels the command's context once it has
// taken cancelAt writes: the watch loop writes each frame in one call.
type frameWriter struct {
	mu       sync.Mutex
	frames   []string
	cancelAt int
	cancel   context.CancelFunc
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames = append(w.frames, string(p))
	if len(w.frames) == w.cancelAt {
		w.cancel()
	}
	return len(p), nil
}

func (w *frameWriter) written() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.frames...)
}

// ttyWriter is a frameWriter that says it is a terminal the way an
// *os.File on one does: by its mode.
type ttyWriter struct{ *frameWriter }

func (ttyWriter) Stat() (os.FileInfo, error) { return ttyInfo{}, nil }

type ttyInfo struct{}

func (ttyInfo) Name() string       { return "/dev/pts/0" }
func (ttyInfo) Size() int64        { return 0 }
func (ttyInfo) Mode() os.FileMode  { return os.ModeDevice | os.ModeCharDevice | 0o620 }
func (ttyInfo) ModTime() time.Time { return fakeTime }
func (ttyInfo) IsDir() bool        { return false }
func (ttyInfo) Sys() any           { return nil }

// watch runs `sluice status --watch` with a 10ms interval until stdout has
// taken frames writes. It fails the test if the command outlives its
// context by much.
func watch(t *testing.T, f *fakeAPI, frames int, tty bool, args ...string) (fw *frameWriter, code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fw = &frameWriter{cancelAt: frames, cancel: cancel}
	var stdout io.Writer = fw
	if tty {
		stdout = ttyWriter{fw}
	}
	var errOut strings.Builder
	env := cli.Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: &errOut,
		Getenv: func(k string) string {
			if k == "SLUICE_SERVER" {
				return f.URL
			}
			return ""
		}}
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, append([]string{"status", "--watch", "--interval", "10ms"}, args...), env)
	}()
	select {
	case code = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("status --watch still running 10s in, after %d frames", len(fw.written()))
	}
	return fw, code, errOut.String()
}

func TestStatusWatch(t *testing.T) {
	t.Run("table, not a terminal", func(t *testing.T) {
		f := newFakeAPI(t)
		f.setOverview(statusOverview())
		fw, code, stderr := watch(t, f, 2, false)
		frames := fw.written()
		if code != 0 || stderr != "" {
			t.Fatalf("code %d, stderr %q", code, stderr)
		}
		// Cancelled after the second frame, the watch asks for no third.
		want := []string{statusTable, "---\n" + statusTable}
		if !reflect.DeepEqual(frames, want) {
			t.Errorf("frames:\n%q\nwant:\n%q", frames, want)
		}
		if n := f.overviewRequests(); n != 2 {
			t.Errorf("%d overview requests, want 2", n)
		}
	})
	t.Run("table on a terminal", func(t *testing.T) {
		f := newFakeAPI(t)
		f.setOverview(statusOverview())
		fw, code, _ := watch(t, f, 3, true)
		want := []string{"\x1b[H\x1b[2J" + statusTable, "\x1b[H\x1b[2J" + statusTable, "\x1b[H\x1b[2J" + statusTable}
		if frames := fw.written(); code != 0 || !reflect.DeepEqual(frames, want) {
			t.Errorf("code %d, frames:\n%q\nwant:\n%q", code, frames, want)
		}
	})
	t.Run("json is one object per line", func(t *testing.T) {
		f := newFakeAPI(t)
		f.setOverview(statusOverview())
		// A terminal changes nothing: NDJSON has no screen to clear.
		fw, code, stderr := watch(t, f, 2, true, "-o", "json")
		frames := fw.written()
		if code != 0 || stderr != "" || len(frames) != 2 {
			t.Fatalf("code %d, stderr %q, %d frames", code, stderr, len(frames))
		}
		for i, fr := range frames {
			var ov api.Overview
			if !strings.HasSuffix(fr, "}\n") || strings.Count(fr, "\n") != 1 || json.Unmarshal([]byte(fr), &ov) != nil {
				t.Fatalf("frame %d is not one JSON line: %q", i, fr)
			}
			if ov.Node.ID != "node-a" || len(ov.Handlers) != 5 || ov.Handlers[0].Name != "audit" {
				t.Errorf("frame %d: %+v", i, ov)
			}
		}
	})
	t.Run("yaml documents", func(t *testing.T) {
		f := newFakeAPI(t)
		f.setOverview(api.Overview{Node: api.NodeInfo{ID: "n"}})
		fw, code, _ := watch(t, f, 2, false, "-o", "yaml")
		doc := "node:\n  id: n\n  brokers: null\n  embedded: false\n  startedAt: \"0001-01-01T00:00:00Z\"\n  version: \"\"\nhandlers: []\n"
		if frames := fw.written(); code != 0 || !reflect.DeepEqual(frames, []string{doc, "---\n" + doc}) {
			t.Errorf("code %d, frames:\n%q", code, frames)
		}
	})
	t.Run("a failure after the first frame is reported and the watch goes on", func(t *testing.T) {
		f := newFakeAPI(t)
		f.setOverview(statusOverview())
		f.overviewStatus = map[int]int{2: 503}
		fw, code, stderr := watch(t, f, 3, false)
		frames := fw.written()
		if code != 0 || len(frames) != 3 || frames[0] != statusTable || frames[2] != "---\n"+statusTable {
			t.Fatalf("code %d, frames:\n%q", code, frames)
		}
		// The failure goes to stderr, not between the frames on stdout.
		if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, " error: getting the overview: overview unavailable\n") {
			t.Errorf("stderr %q", stderr)
		}
		if n := f.overviewRequests(); n != 4 {
			t.Errorf("%d overview requests, want 4 (3 frames and the failure)", n)
		}
	})
	t.Run("a failure of the first request ends it", func(t *testing.T) {
		f := newFakeAPI(t)
		f.overviewStatus = map[int]int{1: 503}
		fw, code, stderr := watch(t, f, 1, false)
		if code != 1 || len(fw.written()) != 0 || stderr != "error: getting the overview: overview unavailable\n" {
			t.Errorf("code %d, frames %q, stderr %q", code, fw.written(), stderr)
		}
		if n := f.overviewRequests(); n != 1 {
			t.Errorf("%d overview requests, want 1", n)
		}
	})
}
