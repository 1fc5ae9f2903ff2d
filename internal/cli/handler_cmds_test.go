package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
)

const twoSpecs = `name: orders-audit
topic: orders
http:
  url: http://audit.internal/hook
  headers:
    x-team: payments
---
name: orders-mail
topic: orders
go: {}
ordering: partition
concurrency: 4
startFrom: latest
`

// The bodies the two specs must be sent as: normalized, defaults filled in.
var twoSpecBodies = []string{
	`{"name":"orders-audit","topic":"orders","http":{"url":"http://audit.internal/hook","headers":{"x-team":"payments"}},"ordering":"key","concurrency":{"min":1,"max":256},"maxInFlightBytes":67108864,"startFrom":"earliest","timeout":"30s","retry":{"maxAttempts":5,"initialBackoff":"200ms","maxBackoff":"1m0s","multiplier":2,"jitter":"full","mode":"inPlace"},"breaker":{"failureRatio":0.5,"minRequests":20,"openFor":"30s","window":"10s"},"deadLetter":{"topic":"orders-audit.dlq"},"scaling":{"maxAge":"1m0s","minNodes":1,"maxNodes":10}}`,
	`{"name":"orders-mail","topic":"orders","go":{},"ordering":"partition","concurrency":4,"maxInFlightBytes":67108864,"startFrom":"latest","timeout":"30s","retry":{"maxAttempts":5,"initialBackoff":"200ms","maxBackoff":"1m0s","multiplier":2,"jitter":"full","mode":"inPlace"},"breaker":{"failureRatio":0.5,"minRequests":20,"openFor":"30s","window":"10s"},"deadLetter":{"topic":"orders-mail.dlq"},"scaling":{"maxAge":"1m0s","minNodes":1,"maxNodes":10}}`,
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHandlerApply(t *testing.T) {
	f := newFakeAPI(t)
	file := writeFile(t, "handlers.yaml", twoSpecs)

	r := run(t, f.URL, "", "handler", "apply", "-f", file)
	if r.code != 0 || r.stdout != "handler/orders-audit created\nhandler/orders-mail created\n" || r.stderr != "" {
		t.Fatalf("first apply: %+v", r)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2: %+v", len(reqs), reqs)
	}
	for i, want := range []fakeRequest{
		{"PUT", "/v1/handlers/orders-audit", twoSpecBodies[0]},
		{"PUT", "/v1/handlers/orders-mail", twoSpecBodies[1]},
	} {
		if reqs[i] != want {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, reqs[i], want)
		}
	}

	// Again, from stdin: nothing new, both configured with the same bodies.
	r = run(t, f.URL, twoSpecs, "handlers", "apply", "-f", "-")
	if r.code != 0 || r.stdout != "handler/orders-audit configured\nhandler/orders-mail configured\n" {
		t.Fatalf("second apply: %+v", r)
	}
	reqs = f.requests()
	if len(reqs) != 4 || reqs[2].Body != twoSpecBodies[0] || reqs[3].Body != twoSpecBodies[1] {
		t.Fatalf("second apply requests: %+v", reqs[2:])
	}
}

func TestHandlerApplyJSONOutput(t *testing.T) {
	f := newFakeAPI(t)
	r := run(t, f.URL, twoSpecs, "handler", "apply", "-f", "-", "-o", "json")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	var l api.HandlerList
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatalf("output is not a HandlerList: %v\n%s", err, r.stdout)
	}
	if len(l.Handlers) != 2 || l.Handlers[0].Name != "orders-audit" || l.Handlers[1].Spec.Concurrency != handlers.Fixed(4) {
		t.Errorf("output = %+v", l)
	}
}

func TestHandlerApplyRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stdin     string
		args      []string
		wantCode  int
		wantErr   string // stderr, exactly
		wantPUTs  int
		wantStdou string
	}{
		{
			name:     "unknown field",
			stdin:    "name: a\ntopic: t\nhttp:\n  urll: http://x\n",
			args:     []string{"-f", "-"},
			wantCode: 2,
			wantErr:  "error: stdin: http.urll: unknown field\n",
		},
		{
			name:     "bad second document sends nothing",
			stdin:    "name: a\ntopic: t\ngo: {}\n---\nname: b\ntopic: t\ngo: {}\nconcurrency: many\n",
			args:     []string{"-f", "-"},
			wantCode: 2,
			wantErr:  "error: stdin: concurrency: must be a whole number or {min, max} (document 2)\n",
		},
		{
			name:     "invalid value",
			stdin:    "name: a\ntopic: t\nhttp:\n  url: svc/hook\n",
			args:     []string{"-f", "-"},
			wantCode: 2,
			wantErr:  "error: stdin: http.url: must be an absolute http(s) URL, got \"svc/hook\"\n",
		},
		{
			name:     "empty input",
			args:     []string{"-f", "-"},
			wantCode: 2,
			wantErr:  "error: stdin: no handler spec found in the input\n",
		},
		{
			name:     "no file",
			wantCode: 2,
			wantErr:  "error: sluice handler apply: -f FILE is required (see 'sluice handler apply --help')\n",
		},
		{
			name:     "missing file",
			args:     []string{"-f", "/nonexistent/h.yaml"},
			wantCode: 2,
			wantErr:  "error: reading handler specs: open /nonexistent/h.yaml: no such file or directory\n",
		},
		{
			name:      "server refuses the second",
			stdin:     "name: a\ntopic: t\ngo: {}\n---\nname: b\ntopic: forbidden\ngo: {}\n",
			args:      []string{"-f", "-"},
			wantCode:  2,
			wantErr:   "error: applying handler/b: topic: is not allowed here\n",
			wantPUTs:  2,
			wantStdou: "handler/a created\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			r := run(t, f.URL, tc.stdin, append([]string{"handler", "apply"}, tc.args...)...)
			if r.code != tc.wantCode || r.stderr != tc.wantErr || r.stdout != tc.wantStdou {
				t.Errorf("got code %d, stdout %q, stderr %q\nwant code %d, stdout %q, stderr %q",
					r.code, r.stdout, r.stderr, tc.wantCode, tc.wantStdou, tc.wantErr)
			}
			if n := len(f.requests()); n != tc.wantPUTs {
				t.Errorf("%d requests sent, want %d", n, tc.wantPUTs)
			}
		})
	}
}

// seed registers the two specs through the CLI and pauses orders-mail.
func seed(t *testing.T, f *fakeAPI) {
	t.Helper()
	if r := run(t, f.URL, twoSpecs, "handler", "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("seeding: %+v", r)
	}
	if r := run(t, f.URL, "", "handler", "pause", "orders-mail"); r.code != 0 {
		t.Fatalf("seeding: %+v", r)
	}
	f.mu.Lock()
	h := f.handlers["orders-audit"]
	h.Status = &api.HandlerStatus{State: "running", Lag: 42}
	h.Status.InFlight, h.Status.Limit, h.Status.Received, h.Status.Failed = 2, 16, 9, 1
	h.Status.Partitions = []api.PartitionStatus{
		{Topic: "orders", Partition: 1, Committed: -2, Fetched: -1},
		{Topic: "orders", Partition: 0, Committed: 5, Fetched: 7, Pending: 2},
		{Topic: "__sluice.orders-audit.replay", Partition: 0, Committed: -2, Fetched: -1},
	}
	f.handlers["orders-audit"] = h
	f.mu.Unlock()
}

func TestHandlerList(t *testing.T) {
	f := newFakeAPI(t)
	seed(t, f)

	r := run(t, f.URL, "", "handler", "list")
	want := "" +
		"NAME           TOPIC    INVOKER                      ORDERING    CONCURRENCY         STATE     LAG\n" +
		"orders-audit   orders   http://audit.internal/hook   key         1..256 (adaptive)   running   42\n" +
		"orders-mail    orders   go                           partition   4                   paused    -\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}

	r = run(t, f.URL, "", "handler", "list", "-o", "json")
	var l api.HandlerList
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || r.code != 0 {
		t.Fatalf("-o json: code %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(l.Handlers) != 2 || l.Handlers[0].Name != "orders-audit" || l.Handlers[0].Status.Lag != 42 || !l.Handlers[1].Paused {
		t.Errorf("-o json = %+v", l)
	}

	r = run(t, f.URL, "", "handler", "list", "-o", "yaml")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "handlers:\n  - name: orders-audit\n    spec:\n      name: orders-audit\n      topic: orders\n      http:\n        url: http://audit.internal/hook\n") {
		t.Errorf("-o yaml:\n%s", r.stdout)
	}
}

func TestHandlerListEmpty(t *testing.T) {
	f := newFakeAPI(t)
	r := run(t, f.URL, "", "handler", "list")
	if r.code != 0 || r.stdout != "" || r.stderr != "no handlers registered\n" {
		t.Errorf("%+v", r)
	}
	r = run(t, f.URL, "", "handler", "list", "-o", "json")
	if r.code != 0 || r.stdout != "{\n  \"handlers\": []\n}\n" {
		t.Errorf("-o json: %+v", r)
	}
}

func TestHandlerGet(t *testing.T) {
	f := newFakeAPI(t)
	seed(t, f)

	r := run(t, f.URL, "", "handler", "get", "orders-audit")
	want := "" +
		"Name:            orders-audit\n" +
		"Topic:           orders\n" +
		"Group:           sluice.orders-audit\n" +
		"Invoker:         http\n" +
		"URL:             http://audit.internal/hook\n" +
		"Headers:         x-team=payments\n" +
		"Ordering:        key\n" +
		"Concurrency:     1..256 (adaptive)\n" +
		"Start from:      earliest\n" +
		"Timeout:         30s\n" +
		"Retry:           5 attempts, backoff 200ms to 1m0s x2, full jitter, inPlace\n" +
		"Dead letters:    orders-audit.dlq\n" +
		"Scaling:         oldest under 1m0s, 1..10 nodes\n" +
		"Paused:          false\n" +
		"Version:         1\n" +
		"Updated:         2026-03-01T12:00:00Z\n" +
		"State:           running\n" +
		"Lag:             42\n" +
		"In flight:       2 of 16\n" +
		"Received:        9\n" +
		"Succeeded:       0\n" +
		"Failed:          1\n" +
		"Retried:         0\n" +
		"Dead-lettered:   0\n" +
		"Commits:         0 (0 failed)\n" +
		"\n" +
		"TOPIC                          PARTITION   COMMITTED   FETCHED   PENDING\n" +
		"__sluice.orders-audit.replay   0           -           -         0\n" +
		"orders                         0           5           7         2\n" +
		"orders                         1           -           -         0\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}

	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			r := run(t, f.URL, "", "handler", "get", "orders-mail", "-o", format)
			if r.code != 0 {
				t.Fatalf("%+v", r)
			}
			var h api.Handler
			var err error
			if format == "json" {
				err = json.Unmarshal([]byte(r.stdout), &h)
			} else {
				err = yamlToAPI(r.stdout, &h)
			}
			if err != nil {
				t.Fatalf("output does not read back as an api.Handler: %v\n%s", err, r.stdout)
			}
			spec := handlers.Spec{Name: "orders-mail", Topic: "orders", Go: &handlers.GoSpec{}, Ordering: "partition", Concurrency: handlers.Fixed(4), StartFrom: "latest"}
			spec.Normalize()
			want := api.Handler{
				Name:      "orders-mail",
				Spec:      spec,
				Paused:    true,
				Version:   2,
				UpdatedAt: fakeTime,
			}
			if !reflect.DeepEqual(h, want) {
				t.Errorf("got  %+v\nwant %+v", h, want)
			}
		})
	}
}

func TestHandlerNotFound(t *testing.T) {
	f := newFakeAPI(t)
	for _, args := range [][]string{
		{"handler", "get", "nope"},
		{"handler", "delete", "nope"},
		{"handler", "pause", "nope"},
		{"handler", "resume", "nope"},
	} {
		t.Run(args[1], func(t *testing.T) {
			r := run(t, f.URL, "", args...)
			if r.code != 3 || r.stderr != "error: handler \"nope\" not found\n" || r.stdout != "" {
				t.Errorf("%+v", r)
			}
		})
	}
}

func TestHandlerDeletePauseResume(t *testing.T) {
	f := newFakeAPI(t)
	seed(t, f)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pause", "orders-audit"}, "handler/orders-audit paused\n"},
		{[]string{"resume", "orders-audit"}, "handler/orders-audit resumed\n"},
		{[]string{"delete", "orders-audit"}, "handler/orders-audit deleted\n"},
	} {
		r := run(t, f.URL, "", append([]string{"handler"}, tc.args...)...)
		if r.code != 0 || r.stdout != tc.want {
			t.Errorf("%v: %+v", tc.args, r)
		}
	}
	f.mu.Lock()
	_, left := f.handlers["orders-audit"]
	f.mu.Unlock()
	if left {
		t.Error("orders-audit is still registered after delete")
	}

	r := run(t, f.URL, "", "handler", "resume", "orders-mail", "-o", "json")
	var h api.Handler
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || r.code != 0 || h.Paused {
		t.Errorf("resume -o json: %+v (%v)", r, err)
	}
}

func TestHandlerApplySeveralFilesChecksAllFirst(t *testing.T) {
	f := newFakeAPI(t)
	good := writeFile(t, "good.yaml", twoSpecs)
	bad := writeFile(t, "bad.yaml", "name: c\ntopic: t\ngo: {}\nordering: random\n")
	r := run(t, f.URL, "", "handler", "apply", "-f", good, "-f", bad)
	want := "error: " + bad + ": ordering: must be key, partition or none, got \"random\"\n"
	if r.code != 2 || r.stderr != want || r.stdout != "" {
		t.Errorf("got code %d, stdout %q, stderr %q\nwant code 2, stderr %q", r.code, r.stdout, r.stderr, want)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}
