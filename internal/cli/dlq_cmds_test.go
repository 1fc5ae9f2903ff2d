package cli_test

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/handlers"
)

func strp(s string) *string { return &s }

// deadLetters are the entries of handler "orders", newest first.
var deadLetters = []api.DeadLetter{
	{
		ID: "1-3", Handler: "orders", Key: "o-17", Attempts: 5, Status: 503,
		Error:       "POST http://svc/hook: 503 Service Unavailable: upstream connect error or disconnect/reset before headers.\nretried and the latest reset reason: connection timeout",
		SourceTopic: "orders", SourcePartition: 2, SourceOffset: 118,
		FirstFailure: fakeTime.Add(-2 * time.Minute), LastFailure: fakeTime,
		State: api.StateDead,
		Value: strp("{\n  \"id\": \"o-17\"\n}"), Headers: map[string]string{"trace-id": "abc", "content-type": "application/json"},
	},
	{
		ID: "0-7", Handler: "orders", KeyBase64: "AP8=", Attempts: 1,
		Error:       "permanent: bad payload",
		SourceTopic: "orders", SourcePartition: 0, SourceOffset: 3,
		FirstFailure: fakeTime.Add(-time.Hour), LastFailure: fakeTime.Add(-time.Hour),
		State: api.StateDead, ValueBase64: "AP8BAg==",
	},
	{
		ID: "0-2", Handler: "orders", Attempts: 5,
		Error:       "timed out",
		SourceTopic: "orders", SourcePartition: 1, SourceOffset: 40,
		FirstFailure: fakeTime.Add(-3 * time.Hour), LastFailure: fakeTime.Add(-3 * time.Hour).In(time.FixedZone("CET", 3600)),
		State: api.StateReplayed, StateChangedAt: fakeTime.Add(-time.Hour),
		Value: strp(""),
	},
}

// newDLQFake is a fake API where handler "orders" has deadLetters.
func newDLQFake(t *testing.T) *fakeAPI {
	t.Helper()
	f := newFakeAPI(t)
	f.mu.Lock()
	f.handlers["orders"] = api.Handler{Name: "orders", Spec: handlers.Spec{Name: "orders", Topic: "orders", Go: &handlers.GoSpec{}}, Version: 1, UpdatedAt: fakeTime}
	f.mu.Unlock()
	f.setDeadLetters("orders", deadLetters)
	return f
}

func TestDLQList(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantOut    string
		wantErr    string
		wantTarget string // the request's path and query
	}{
		{
			name: "all",
			args: []string{"dlq", "list", "orders"},
			wantOut: "" +
				"ID    STATE      ATTEMPTS   SOURCE         LAST FAILURE           KEY           ERROR\n" +
				"1-3   dead       5          orders/2@118   2026-03-01T12:00:00Z   o-17          POST http://svc/hook: 503 Service Unavailable: upstream con…\n" +
				"0-7   dead       1          orders/0@3     2026-03-01T11:00:00Z   base64:AP8=   permanent: bad payload\n" +
				"0-2   replayed   5          orders/1@40    2026-03-01T09:00:00Z   -             timed out\n" +
				"3 of 3 entries\n",
			wantTarget: "/v1/handlers/orders/dlq",
		},
		{
			name: "a page with more after it",
			args: []string{"deadletters", "ls", "orders", "--limit", "1", "--offset", "1"},
			wantOut: "" +
				"ID    STATE   ATTEMPTS   SOURCE       LAST FAILURE           KEY           ERROR\n" +
				"0-7   dead    1          orders/0@3   2026-03-01T11:00:00Z   base64:AP8=   permanent: bad payload\n" +
				"1 of 3 entries\n" +
				"more: --offset 2\n",
			wantTarget: "/v1/handlers/orders/dlq?limit=1&offset=1",
		},
		{
			name: "every filter",
			args: []string{"dlq", "list", "orders", "--error", "Service Unavailable", "--since", "2026-03-01T11:30:00Z",
				"--until", "2026-03-01T13:00:00+01:00", "--state", "dead", "--limit", "10"},
			wantOut: "" +
				"ID    STATE   ATTEMPTS   SOURCE         LAST FAILURE           KEY    ERROR\n" +
				"1-3   dead    5          orders/2@118   2026-03-01T12:00:00Z   o-17   POST http://svc/hook: 503 Service Unavailable: upstream con…\n" +
				"1 of 1 entry\n",
			wantTarget: "/v1/handlers/orders/dlq?error=Service+Unavailable&limit=10&since=2026-03-01T11%3A30%3A00Z&state=dead&until=2026-03-01T12%3A00%3A00Z",
		},
		{
			name:       "nothing matches",
			args:       []string{"dlq", "list", "orders", "--state", "discarded"},
			wantErr:    "no dead-letter entries of orders match\n",
			wantTarget: "/v1/handlers/orders/dlq?state=discarded",
		},
		{
			name:       "past the end",
			args:       []string{"dlq", "list", "orders", "--offset", "5"},
			wantErr:    "no entries at offset 5; 3 in all\n",
			wantTarget: "/v1/handlers/orders/dlq?offset=5",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDLQFake(t)
			r := run(t, f.URL, "", tc.args...)
			if r.code != 0 || r.stdout != tc.wantOut || r.stderr != tc.wantErr {
				t.Errorf("code %d, stdout:\n%s\nstderr: %q\nwant stdout:\n%s\nstderr: %q", r.code, r.stdout, r.stderr, tc.wantOut, tc.wantErr)
			}
			if want := []fakeRequest{{Method: "GET", Path: tc.wantTarget}}; !reflect.DeepEqual(f.requests(), want) {
				t.Errorf("requests:\n got %+v\nwant %+v", f.requests(), want)
			}
		})
	}
}

func TestDLQListEmptyQueue(t *testing.T) {
	f := newDLQFake(t)
	f.setDeadLetters("orders", nil)
	r := run(t, f.URL, "", "dlq", "list", "orders")
	if r.code != 0 || r.stdout != "" || r.stderr != "no dead-letter entries of orders\n" {
		t.Errorf("%+v", r)
	}
	r = run(t, f.URL, "", "dlq", "list", "orders", "-o", "json")
	if r.code != 0 || r.stdout != "{\n  \"entries\": [],\n  \"total\": 0\n}\n" {
		t.Errorf("-o json: %+v", r)
	}
}

// A duration is that long before now, sent as an RFC 3339 time in UTC.
func TestDLQListSinceDuration(t *testing.T) {
	f := newDLQFake(t)
	before := time.Now().Truncate(time.Second)
	r := run(t, f.URL, "", "dlq", "list", "orders", "--since", "90m", "--until", "1h", "-o", "json")
	after := time.Now()
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests: %+v", reqs)
	}
	u, err := url.Parse(reqs[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if len(q) != 2 {
		t.Errorf("query %q, want since and until only", u.RawQuery)
	}
	for param, ago := range map[string]time.Duration{"since": 90 * time.Minute, "until": time.Hour} {
		v := q.Get(param)
		got, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || !strings.HasSuffix(v, "Z") {
			t.Errorf("%s=%q is not an RFC 3339 time in UTC", param, v)
			continue
		}
		if got.Before(before.Add(-ago)) || got.After(after.Add(-ago)) {
			t.Errorf("%s=%s, want between %s and %s", param, v, before.Add(-ago).UTC(), after.Add(-ago).UTC())
		}
	}
}

func TestDLQListData(t *testing.T) {
	f := newDLQFake(t)
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			r := run(t, f.URL, "", "dlq", "list", "orders", "--limit", "2", "-o", format)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("%+v", r)
			}
			var p api.DeadLetterPage
			var err error
			if format == "json" {
				err = json.Unmarshal([]byte(r.stdout), &p)
			} else {
				err = yamlToAPI(r.stdout, &p)
			}
			if err != nil {
				t.Fatalf("output does not read back as a api.DeadLetterPage: %v\n%s", err, r.stdout)
			}
			if p.Total != 3 || p.Next != 2 || len(p.Entries) != 2 || p.Entries[0].ID != "1-3" || p.Entries[1].KeyBase64 != "AP8=" ||
				!p.Entries[0].LastFailure.Equal(fakeTime) || p.Entries[0].Error != deadLetters[0].Error {
				t.Errorf("page = %+v", p)
			}
		})
	}
}

func TestDLQShow(t *testing.T) {
	for _, tc := range []struct {
		name, id, want string
	}{
		{
			name: "text payload",
			id:   "1-3",
			want: "" +
				"ID:              1-3\n" +
				"Handler:         orders\n" +
				"State:           dead\n" +
				"Attempts:        5\n" +
				"Source:          orders/2@118\n" +
				"Key:             o-17\n" +
				"First failure:   2026-03-01T11:58:00Z\n" +
				"Last failure:    2026-03-01T12:00:00Z\n" +
				"HTTP status:     503\n" +
				`Error:           "POST http://svc/hook: 503 Service Unavailable: upstream connect error or disconnect/reset before headers.\nretried and the latest reset reason: connection timeout"` + "\n" +
				"Headers:         content-type=application/json\n" +
				"                 trace-id=abc\n" +
				"Value:\n" +
				"{\n" +
				"  \"id\": \"o-17\"\n" +
				"}\n",
		},
		{
			name: "binary payload",
			id:   "0-7",
			want: "" +
				"ID:              0-7\n" +
				"Handler:         orders\n" +
				"State:           dead\n" +
				"Attempts:        1\n" +
				"Source:          orders/0@3\n" +
				"Key (base64):    AP8=\n" +
				"First failure:   2026-03-01T11:00:00Z\n" +
				"Last failure:    2026-03-01T11:00:00Z\n" +
				"Error:           permanent: bad payload\n" +
				"Headers:         -\n" +
				"valueBase64:     AP8BAg==\n",
		},
		{
			name: "empty payload, replayed",
			id:   "0-2",
			want: "" +
				"ID:              0-2\n" +
				"Handler:         orders\n" +
				"State:           replayed\n" +
				"State changed:   2026-03-01T11:00:00Z\n" +
				"Attempts:        5\n" +
				"Source:          orders/1@40\n" +
				"Key:             -\n" +
				"First failure:   2026-03-01T09:00:00Z\n" +
				"Last failure:    2026-03-01T09:00:00Z\n" +
				"Error:           timed out\n" +
				"Headers:         -\n" +
				"Value:           -\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDLQFake(t)
			r := run(t, f.URL, "", "dlq", "show", "orders", tc.id)
			if r.code != 0 || r.stdout != tc.want || r.stderr != "" {
				t.Errorf("code %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, tc.want, r.stderr)
			}
			if want := []fakeRequest{{Method: "GET", Path: "/v1/handlers/orders/dlq/" + tc.id}}; !reflect.DeepEqual(f.requests(), want) {
				t.Errorf("requests:\n got %+v\nwant %+v", f.requests(), want)
			}
		})
	}
}

func TestDLQShowData(t *testing.T) {
	f := newDLQFake(t)
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			r := run(t, f.URL, "", "dlq", "show", "orders", "1-3", "-o", format)
			if r.code != 0 {
				t.Fatalf("%+v", r)
			}
			var e api.DeadLetter
			var err error
			if format == "json" {
				err = json.Unmarshal([]byte(r.stdout), &e)
			} else {
				err = yamlToAPI(r.stdout, &e)
			}
			if err != nil {
				t.Fatalf("output does not read back as a api.DeadLetter: %v\n%s", err, r.stdout)
			}
			if !reflect.DeepEqual(e, deadLetters[0]) {
				t.Errorf("got  %+v\nwant %+v", e, deadLetters[0])
			}
		})
	}
}

func TestDLQReplayAndPurge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
		wantReq fakeRequest
		// wantJob is the job request that follows a selection of all.
		wantJob    *fakeRequest
		wantStates map[string]string
	}{
		{
			name:       "replay ids",
			args:       []string{"dlq", "replay", "orders", "1-3", "0-2"},
			wantOut:    "replayed 2 entries of orders\n",
			wantReq:    fakeRequest{"POST", "/v1/handlers/orders/dlq/replay", `{"ids":["1-3","0-2"]}`},
			wantStates: map[string]string{"1-3": "replayed", "0-7": "dead", "0-2": "replayed"},
		},
		{
			name:       "replay all replays the dead ones",
			args:       []string{"dlq", "replay", "orders", "--all"},
			wantOut:    "replayed 2 entries of orders\n",
			wantErr:    "replay job job1 of orders started on node fake-node\nreplay: 2 of 2 entries\n",
			wantReq:    fakeRequest{"POST", "/v1/handlers/orders/dlq/replay", `{"all":true}`},
			wantJob:    &fakeRequest{"GET", "/v1/handlers/orders/dlq/jobs/job1", ""},
			wantStates: map[string]string{"1-3": "replayed", "0-7": "replayed", "0-2": "replayed"},
		},
		{
			name:       "replay all detached starts the job and does not follow it",
			args:       []string{"dlq", "replay", "orders", "--all", "--detach"},
			wantOut:    "started replay job job1 of orders on node fake-node; follow it with: sluice dlq jobs orders job1 --wait\n",
			wantReq:    fakeRequest{"POST", "/v1/handlers/orders/dlq/replay", `{"all":true}`},
			wantStates: map[string]string{"1-3": "replayed", "0-7": "replayed", "0-2": "replayed"},
		},
		{
			name:       "purge one",
			args:       []string{"deadletters", "purge", "orders", "0-7"},
			wantOut:    "discarded 1 entry of orders\n",
			wantReq:    fakeRequest{"POST", "/v1/handlers/orders/dlq/purge", `{"ids":["0-7"]}`},
			wantStates: map[string]string{"1-3": "dead", "0-7": "discarded", "0-2": "replayed"},
		},
		{
			name:       "purge all",
			args:       []string{"dlq", "purge", "orders", "--all"},
			wantOut:    "discarded 2 entries of orders\n",
			wantErr:    "purge job job1 of orders started on node fake-node\npurge: 2 of 2 entries\n",
			wantReq:    fakeRequest{"POST", "/v1/handlers/orders/dlq/purge", `{"all":true}`},
			wantJob:    &fakeRequest{"GET", "/v1/handlers/orders/dlq/jobs/job1", ""},
			wantStates: map[string]string{"1-3": "discarded", "0-7": "discarded", "0-2": "replayed"},
		},
		{
			name:       "replay as JSON",
			args:       []string{"dlq", "replay", "orders", "0-7", "-o", "json"},
			wantOut:    "{\n  \"replayed\": 1\n}\n",
			wantReq:    fakeRequest{"POST", "/v1/handlers/orders/dlq/replay", `{"ids":["0-7"]}`},
			wantStates: map[string]string{"1-3": "dead", "0-7": "replayed", "0-2": "replayed"},
		},
		{
			name:       "purge as YAML",
			args:       []string{"dlq", "purge", "orders", "--all", "-o", "yaml"},
			wantOut:    "discarded: 2\n",
			wantErr:    "purge job job1 of orders started on node fake-node\npurge: 2 of 2 entries\n",
			wantReq:    fakeRequest{"POST", "/v1/handlers/orders/dlq/purge", `{"all":true}`},
			wantJob:    &fakeRequest{"GET", "/v1/handlers/orders/dlq/jobs/job1", ""},
			wantStates: map[string]string{"1-3": "discarded", "0-7": "discarded", "0-2": "replayed"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDLQFake(t)
			r := run(t, f.URL, "", tc.args...)
			if r.code != 0 || r.stdout != tc.wantOut || r.stderr != tc.wantErr {
				t.Errorf("got code %d, stdout %q, stderr %q; want 0, %q, %q", r.code, r.stdout, r.stderr, tc.wantOut, tc.wantErr)
			}
			want := []fakeRequest{tc.wantReq}
			if tc.wantJob != nil {
				want = append(want, *tc.wantJob)
			}
			if !reflect.DeepEqual(f.requests(), want) {
				t.Errorf("requests:\n got %+v\nwant %+v", f.requests(), want)
			}
			if got := f.deadLetterStates("orders"); !reflect.DeepEqual(got, tc.wantStates) {
				t.Errorf("states after: %v, want %v", got, tc.wantStates)
			}
		})
	}
}

func TestDLQNotFound(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"list of an unknown handler", []string{"dlq", "list", "nope"},
			`error: listing dead letters of nope: handler "nope" not found`},
		{"show of an unknown handler", []string{"dlq", "show", "nope", "0-1"},
			`error: handler "nope" not found`},
		{"show of an unknown id", []string{"dlq", "show", "orders", "9-9"},
			`error: dead-letter entry not found: "9-9"`},
		{"replay of an unknown handler", []string{"dlq", "replay", "nope", "--all"},
			`error: replaying dead letters of nope: handler "nope" not found`},
		{"replay with one unknown id", []string{"dlq", "replay", "orders", "1-3", "9-9"},
			`error: replaying dead letters of orders: dead-letter entry not found: "9-9"`},
		{"purge of an unknown id", []string{"dlq", "purge", "orders", "9-9"},
			`error: discarding dead letters of orders: dead-letter entry not found: "9-9"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDLQFake(t)
			r := run(t, f.URL, "", tc.args...)
			if r.code != 3 || r.stdout != "" || r.stderr != tc.wantErr+"\n" {
				t.Errorf("got code %d, stdout %q, stderr %q\nwant code 3, stderr %q", r.code, r.stdout, r.stderr, tc.wantErr+"\n")
			}
			if n := len(f.requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
			want := map[string]string{"1-3": "dead", "0-7": "dead", "0-2": "replayed"}
			if got := f.deadLetterStates("orders"); !reflect.DeepEqual(got, want) {
				t.Errorf("states changed: %v", got)
			}
		})
	}
}

func TestDLQUsageErrors(t *testing.T) {
	f := newDLQFake(t)
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"replay of nothing", []string{"dlq", "replay", "orders"},
			"error: sluice dlq replay: name the entries to replay: their IDs, or --all (see 'sluice dlq replay --help')"},
		{"purge of nothing", []string{"dlq", "purge", "orders"},
			"error: sluice dlq purge: name the entries to purge: their IDs, or --all (see 'sluice dlq purge --help')"},
		{"ids and --all", []string{"dlq", "replay", "orders", "0-7", "--all"},
			"error: sluice dlq replay: give entry IDs or --all, not both (see 'sluice dlq replay --help')"},
		{"empty id", []string{"dlq", "purge", "orders", ""},
			"error: sluice dlq purge: an entry ID is empty (see 'sluice dlq purge --help')"},
		{"replay without a name", []string{"dlq", "replay", "--all"},
			"error: sluice dlq replay: missing NAME (see 'sluice dlq replay --help')"},
		{"bad name", []string{"dlq", "list", "Orders"},
			`error: name: "Orders" must match [a-z0-9][a-z0-9-]{0,62}`},
		{"show without an id", []string{"dlq", "show", "orders"},
			"error: sluice dlq show: missing ID (see 'sluice dlq show --help')"},
		{"--since garbage", []string{"dlq", "list", "orders", "--since", "yesterday"},
			`error: sluice dlq list: --since: must be an RFC 3339 time such as 2026-01-02T15:04:05Z or a duration ago such as 1h, got "yesterday" (see 'sluice dlq list --help')`},
		{"--until negative", []string{"dlq", "list", "orders", "--until", "-1h"},
			`error: sluice dlq list: --until: must be an RFC 3339 time such as 2026-01-02T15:04:05Z or a duration ago such as 1h, got "-1h" (see 'sluice dlq list --help')`},
		{"--until before --since", []string{"dlq", "list", "orders", "--since", "2026-03-01T12:00:00Z", "--until", "2026-03-01T12:00:00+01:00"},
			"error: sluice dlq list: --until 2026-03-01T11:00:00Z is before --since 2026-03-01T12:00:00Z (see 'sluice dlq list --help')"},
		{"--state foo", []string{"dlq", "list", "orders", "--state", "foo"},
			`error: sluice dlq list: --state must be dead, replayed or discarded, got "foo" (see 'sluice dlq list --help')`},
		{"--limit 0", []string{"dlq", "list", "orders", "--limit", "0"},
			"error: sluice dlq list: --limit must be from 1 to 1000, got 0 (see 'sluice dlq list --help')"},
		{"--limit too big", []string{"dlq", "list", "orders", "--limit", "1001"},
			"error: sluice dlq list: --limit must be from 1 to 1000, got 1001 (see 'sluice dlq list --help')"},
		{"--limit not a number", []string{"dlq", "list", "orders", "--limit", "ten"},
			`error: invalid argument "ten" for "--limit" flag: strconv.ParseInt: parsing "ten": invalid syntax (see 'sluice dlq list --help')`},
		{"--offset negative", []string{"dlq", "list", "orders", "--offset", "-1"},
			"error: sluice dlq list: --offset must not be negative, got -1 (see 'sluice dlq list --help')"},
		{"unknown subcommand", []string{"dlq", "replya", "orders"},
			`error: sluice dlq: unknown command "replya"; did you mean "replay"? (see 'sluice dlq --help')`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, f.URL, "", tc.args...)
			if r.code != 2 || r.stdout != "" || r.stderr != tc.wantErr+"\n" {
				t.Errorf("got code %d, stdout %q, stderr %q\nwant code 2, stderr %q", r.code, r.stdout, r.stderr, tc.wantErr+"\n")
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("usage errors sent %d requests: %+v", n, f.requests())
	}
}

// seedBreaker gives handler "orders" a status whose breaker is open.
func seedBreaker(t *testing.T, f *fakeAPI) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.handlers["orders"]
	h.Status = &api.HandlerStatus{State: "breaker-open", Lag: 7}
	h.Status.Limit, h.Status.Received, h.Status.Succeeded, h.Status.Failed = 16, 120, 100, 20
	h.Status.Retried, h.Status.DeadLettered, h.Status.Rebalances = 15, 3, 1
	h.Status.Breaker = &api.BreakerStatus{State: "open", ChangedAt: fakeTime.Add(-30 * time.Second), Opened: 3}
	f.handlers["orders"] = h
}

func TestHandlerGetShowsBreakerAndFailureCounters(t *testing.T) {
	f := newDLQFake(t)
	seedBreaker(t, f)
	r := run(t, f.URL, "", "handler", "get", "orders")
	want := "" +
		"Name:            orders\n" +
		"Topic:           orders\n" +
		"Group:           sluice.orders\n" +
		"Invoker:         go\n" +
		"Ordering:        \n" +
		"Concurrency:     0\n" +
		"Start from:      \n" +
		"Paused:          false\n" +
		"Version:         1\n" +
		"Updated:         2026-03-01T12:00:00Z\n" +
		"State:           breaker-open\n" +
		"Breaker:         open (since 2026-03-01T11:59:30Z, opened 3 times)\n" +
		"Lag:             7\n" +
		"In flight:       0 of 16\n" +
		"Received:        120\n" +
		"Succeeded:       100\n" +
		"Failed:          20\n" +
		"Retried:         15\n" +
		"Dead-lettered:   3\n" +
		"Commits:         0 (0 failed)\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}

	r = run(t, f.URL, "", "handler", "list")
	want = "" +
		"NAME     TOPIC    INVOKER   ORDERING   CONCURRENCY   STATE          LAG\n" +
		"orders   orders   go                   0             breaker-open   7\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("list: code %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}

	r = run(t, f.URL, "", "handler", "get", "orders", "-o", "json")
	var h api.Handler
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || r.code != 0 {
		t.Fatalf("-o json: code %d, %v\n%s", r.code, err, r.stdout)
	}
	if b := h.Status.Breaker; b == nil || b.State != "open" || b.Opened != 3 || !b.ChangedAt.Equal(fakeTime.Add(-30*time.Second)) ||
		h.Status.Retried != 15 || h.Status.DeadLettered != 3 || h.Status.Rebalances != 1 {
		t.Errorf("-o json status = %+v", h.Status)
	}
}

func TestHandlerGetBreakerStates(t *testing.T) {
	for _, tc := range []struct {
		breaker *api.BreakerStatus
		want    string // the Breaker line, or "" for none
	}{
		{nil, ""},
		{&api.BreakerStatus{State: "disabled"}, "Breaker:         disabled\n"},
		{&api.BreakerStatus{State: "closed"}, "Breaker:         closed (opened 0 times)\n"},
		{&api.BreakerStatus{State: "half-open", ChangedAt: fakeTime, Opened: 1}, "Breaker:         half-open (since 2026-03-01T12:00:00Z, opened 1 time)\n"},
	} {
		f := newDLQFake(t)
		seedBreaker(t, f)
		f.mu.Lock()
		f.handlers["orders"].Status.Breaker = tc.breaker
		f.mu.Unlock()
		r := run(t, f.URL, "", "handler", "get", "orders")
		var got string
		for _, line := range strings.SplitAfter(r.stdout, "\n") {
			if strings.HasPrefix(line, "Breaker:") {
				got += line
			}
		}
		if r.code != 0 || got != tc.want {
			t.Errorf("breaker %+v: code %d, line %q, want %q", tc.breaker, r.code, got, tc.want)
		}
	}
}
