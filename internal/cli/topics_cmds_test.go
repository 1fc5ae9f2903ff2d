package cli_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/sluicehq/sluice/api"
)

func TestTopicsList(t *testing.T) {
	f := newFakeAPI(t)
	f.topics["orders"] = api.TopicInfo{Name: "orders", Partitions: 12, Messages: 1500}
	f.topics["audit"] = api.TopicInfo{Name: "audit", Partitions: 3, Messages: 0}
	f.topics["__consumer_offsets"] = api.TopicInfo{Name: "__consumer_offsets", Partitions: 50, Internal: true}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"hides internal", []string{"topics", "list"}, "" +
			"NAME     PARTITIONS   MESSAGES\n" +
			"audit    3            0\n" +
			"orders   12           1500\n"},
		{"all", []string{"topic", "ls", "--all"}, "" +
			"NAME                 PARTITIONS   MESSAGES\n" +
			"__consumer_offsets   50           0\n" +
			"audit                3            0\n" +
			"orders               12           1500\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, f.URL, "", tc.args...)
			if r.code != 0 || r.stdout != tc.want {
				t.Errorf("code %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, tc.want, r.stderr)
			}
		})
	}

	r := run(t, f.URL, "", "topics", "list", "-o", "json")
	var l api.TopicList
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || r.code != 0 {
		t.Fatalf("-o json: code %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(l.Topics) != 2 || l.Topics[0].Name != "audit" || !reflect.DeepEqual(l.Topics[1], api.TopicInfo{Name: "orders", Partitions: 12, Messages: 1500}) {
		t.Errorf("-o json = %+v", l)
	}
}

func TestTopicsCreate(t *testing.T) {
	f := newFakeAPI(t)
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
		wantBody string // of the request; empty: none sent
	}{
		{"default partitions", []string{"events"}, 0, "topic/events created\n", "", `{"name":"events","partitions":0}`},
		{"partitions", []string{"payments", "--partitions", "6"}, 0, "topic/payments created\n", "", `{"name":"payments","partitions":6}`},
		{"exists", []string{"events"}, 2, "", "error: creating topic/events: name: topic \"events\" exists\n", `{"name":"events","partitions":0}`},
		{"refused", []string{"huge", "--partitions", "5000"}, 2, "", "error: creating topic/huge: partitions: must be at most 1000\n", `{"name":"huge","partitions":5000}`},
		{"negative", []string{"x", "--partitions", "-2"}, 2, "", "error: sluice topics create: --partitions must not be negative, got -2 (see 'sluice topics create --help')\n", ""},
		{"bad name", []string{"a b"}, 2, "", "error: name: \"a b\" is not a valid topic name: use up to 249 of a-z A-Z 0-9 . _ -\n", ""},
		{"no name", nil, 2, "", "error: sluice topics create: missing NAME (see 'sluice topics create --help')\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.requests())
			r := run(t, f.URL, "", append([]string{"topics", "create"}, tc.args...)...)
			if r.code != tc.wantCode || r.stdout != tc.wantOut || r.stderr != tc.wantErr {
				t.Errorf("got code %d, stdout %q, stderr %q\nwant code %d, stdout %q, stderr %q",
					r.code, r.stdout, r.stderr, tc.wantCode, tc.wantOut, tc.wantErr)
			}
			reqs := f.requests()[before:]
			switch {
			case tc.wantBody == "" && len(reqs) != 0:
				t.Errorf("sent %+v, want nothing", reqs)
			case tc.wantBody != "" && (len(reqs) != 1 || reqs[0] != fakeRequest{"POST", "/v1/topics", tc.wantBody}):
				t.Errorf("sent %+v, want one POST /v1/topics with %s", reqs, tc.wantBody)
			}
		})
	}
}
