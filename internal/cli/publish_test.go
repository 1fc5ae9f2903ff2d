package cli_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api"
)

func TestPublishStdin(t *testing.T) {
	f := newFakeAPI(t)
	// CRLF, empty lines and no final newline: three messages.
	r := run(t, f.URL, "one\r\n\n\r\ntwo\n{\"n\":3}", "publish", "orders", "--key", "k", "--header", "source=cli")
	if r.code != 0 || r.stdout != "published 3 messages to orders\n" || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	want := `{"messages":[` +
		`{"key":"k","value":"one","headers":{"source":"cli"}},` +
		`{"key":"k","value":"two","headers":{"source":"cli"}},` +
		`{"key":"k","value":"{\"n\":3}","headers":{"source":"cli"}}]}`
	if reqs[0].Method != "POST" || reqs[0].Path != "/v1/topics/orders/messages" || reqs[0].Body != want {
		t.Errorf("request:\n got %+v\nwant body %s", reqs[0], want)
	}
}

func TestPublishStdinBatches(t *testing.T) {
	f := newFakeAPI(t)
	var in strings.Builder
	for i := range 1201 {
		fmt.Fprintf(&in, "m%d\n", i)
	}
	r := run(t, f.URL, in.String(), "publish", "big", "-o", "json")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	var res []api.Produced
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("-o json is not an array of results: %v\n%.200s", err, r.stdout)
	}
	if len(res) != 1201 || res[1200] != (api.Produced{Partition: 0, Offset: 1200}) {
		t.Errorf("%d results, last %+v", len(res), res[len(res)-1])
	}
	var sizes []int
	for _, q := range f.requests() {
		var req api.PublishRequest
		if err := json.Unmarshal([]byte(q.Body), &req); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(req.Messages))
	}
	if want := []int{500, 500, 201}; !reflect.DeepEqual(sizes, want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
	msgs := f.messages("big")
	if len(msgs) != 1201 || string(msgs[0].Value) != `"m0"` || string(msgs[1200].Value) != `"m1200"` {
		t.Errorf("published %d messages, first %s, last %s", len(msgs), msgs[0].Value, msgs[len(msgs)-1].Value)
	}
}

func TestPublishStdinBatchesByBytes(t *testing.T) {
	f := newFakeAPI(t)
	// Nine 1 MiB lines, far past bufio.Scanner's 64 KiB: three fit in a
	// 4 MiB batch with the JSON around them, a fourth does not.
	line := strings.Repeat("x", 1<<20)
	in := strings.Repeat(line+"\n", 9)
	r := run(t, f.URL, in, "publish", "big")
	if r.code != 0 || r.stdout != "published 9 messages to big\n" {
		t.Fatalf("%+v", r)
	}
	var sizes []int
	for _, q := range f.requests() {
		var req api.PublishRequest
		if err := json.Unmarshal([]byte(q.Body), &req); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(req.Messages))
		for _, m := range req.Messages {
			if len(m.Value) != len(line)+2 {
				t.Fatalf("a value of %d bytes, want %d", len(m.Value), len(line)+2)
			}
		}
	}
	if want := []int{3, 3, 3}; !reflect.DeepEqual(sizes, want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
}

func TestPublishStdinPartialFailure(t *testing.T) {
	f := newFakeAPI(t)
	var in strings.Builder
	for range 700 {
		in.WriteString("m\n")
	}
	// The fake refuses a batch once the topic holds 500 messages.
	f.mu.Lock()
	f.publishLimit = 500
	f.mu.Unlock()
	r := run(t, f.URL, in.String(), "publish", "orders")
	want := "error: publishing to orders (the first 500 messages were published): topic is full\n"
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("got code %d, stdout %q, stderr %q\nwant code 1, stderr %q", r.code, r.stdout, r.stderr, want)
	}
}

func TestPublishOne(t *testing.T) {
	binary := writeFile(t, "blob.bin", "\x00\xffhi")
	text := writeFile(t, "doc.json", "{\"id\": 1}\n")
	empty := writeFile(t, "empty", "")
	for _, tc := range []struct {
		name     string
		args     []string
		wantOut  string
		wantBody string
	}{
		{
			name:     "data with everything",
			args:     []string{"--data", "héllo", "--key", "o-1", "--header", "a=b=c", "--header", "empty=", "--partition", "3"},
			wantOut:  "orders/3@0\n",
			wantBody: `{"messages":[{"key":"o-1","value":"héllo","headers":{"a":"b=c","empty":""},"partition":3}]}`,
		},
		{
			name:     "empty key and data are sent",
			args:     []string{"--data", "", "--key", ""},
			wantOut:  "orders/0@0\n",
			wantBody: `{"messages":[{"key":"","value":""}]}`,
		},
		{
			name:     "binary file",
			args:     []string{"--file", binary},
			wantOut:  "orders/0@0\n",
			wantBody: `{"messages":[{"valueBase64":"AP9oaQ=="}]}`,
		},
		{
			name:     "text file kept whole",
			args:     []string{"--file", text},
			wantOut:  "orders/0@0\n",
			wantBody: `{"messages":[{"value":"{\"id\": 1}\n"}]}`,
		},
		{
			name:     "empty file",
			args:     []string{"--file", empty},
			wantOut:  "orders/0@0\n",
			wantBody: `{"messages":[{"value":""}]}`,
		},
		{
			name:     "json output",
			args:     []string{"--data", "x", "-o", "json"},
			wantOut:  "[\n  {\n    \"partition\": 0,\n    \"offset\": 0\n  }\n]\n",
			wantBody: `{"messages":[{"value":"x"}]}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			// Stdin has lines: with --data or --file it must be ignored.
			r := run(t, f.URL, "ignored\n", append([]string{"publish", "orders"}, tc.args...)...)
			if r.code != 0 || r.stdout != tc.wantOut {
				t.Fatalf("got %+v, want stdout %q", r, tc.wantOut)
			}
			reqs := f.requests()
			if len(reqs) != 1 || reqs[0].Body != tc.wantBody {
				t.Errorf("requests %+v\nwant one with body %s", reqs, tc.wantBody)
			}
		})
	}
}

func TestPublishUsage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"header without =", []string{"orders", "--header", "a=b", "--header", "oops"},
			`error: sluice publish: --header "oops" must be key=value (see 'sluice publish --help')`},
		{"header without key", []string{"orders", "--header", "=v"},
			`error: sluice publish: --header "=v" must be key=value (see 'sluice publish --help')`},
		{"data and file", []string{"orders", "--data", "x", "--file", "y"},
			`error: sluice publish: use --data or --file, not both (see 'sluice publish --help')`},
		{"negative partition", []string{"orders", "--data", "x", "--partition", "-1"},
			`error: sluice publish: --partition must not be negative, got -1 (see 'sluice publish --help')`},
		{"partition not a number", []string{"orders", "--partition", "one"},
			`error: invalid argument "one" for "--partition" flag: strconv.ParseInt: parsing "one": invalid syntax (see 'sluice publish --help')`},
		{"no topic", nil,
			`error: sluice publish: missing TOPIC (see 'sluice publish --help')`},
		{"two topics", []string{"a", "b"},
			`error: sluice publish: unexpected argument "b" (see 'sluice publish --help')`},
		{"bad topic", []string{"no/slash", "--data", "x"},
			`error: topic: "no/slash" is not a valid topic name: use up to 249 of a-z A-Z 0-9 . _ -`},
		{"missing file", []string{"orders", "--file", "/nonexistent/v"},
			`error: reading the message value: open /nonexistent/v: no such file or directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			r := run(t, f.URL, "line\n", append([]string{"publish"}, tc.args...)...)
			if r.code != 2 || r.stderr != tc.wantErr+"\n" || r.stdout != "" {
				t.Errorf("got code %d, stdout %q, stderr %q\nwant code 2, stderr %q", r.code, r.stdout, r.stderr, tc.wantErr)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
		})
	}
}
