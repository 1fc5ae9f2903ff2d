package handlers

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseBatchReply: any 2xx answer to a batch (the endpoint is not
// trusted) is read without a panic as either success or a *BatchError
// that names only messages of the batch, each at most once, each with
// ErrReportedFailed, and only messages whose ids the answer listed.
func FuzzParseBatchReply(f *testing.F) {
	for _, s := range []struct{ ctype, body string }{
		{"application/json", `{"failed":["t/0/1"]}`},
		{"application/json", `{"failed":["t/0/1","t/0/1","t/3/9","nope"]}`},
		{"application/json; charset=utf-8", `{"failed":[]}`},
		{"", `{"failed":["t/0/2"]}`},
		{"text/plain", `ok`},
		{"application/json", `  `},
		{"application/json", `[1,2]`},
		{"application/json", `{"failed":"t/0/1"}`},
		{"application/json", `{"failed":[1,null,{"a":1}]}`},
		{"application/problem+json", `{"failed":["t/0/1"],"extra":true}`},
		{"", ``},
	} {
		f.Add(s.ctype, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		ms := []*Message{
			{Topic: "t", Partition: 0, Offset: 1},
			{Topic: "t", Partition: 0, Offset: 2},
			{Topic: "t", Partition: 3, Offset: 9},
			{Topic: "q", Ref: "uuid-1"},
		}
		err := parseBatchReply(ctype, body, ms)
		if err == nil {
			return
		}
		var be *BatchError
		if !errors.As(err, &be) {
			t.Fatalf("not a *BatchError: %T %v", err, err)
		}
		if len(be.Failed) == 0 || len(be.Failed) > len(ms) {
			t.Fatalf("%d failed of %d", len(be.Failed), len(ms))
		}
		var reply batchReply
		if jerr := json.Unmarshal(body, &reply); jerr != nil {
			t.Fatalf("failures read from a body that is not a reply: %v", jerr)
		}
		listed := map[string]bool{}
		for _, id := range reply.Failed {
			listed[id] = true
		}
		for m, e := range be.Failed {
			found := false
			for _, x := range ms {
				found = found || x == m
			}
			if !found {
				t.Fatalf("a message that is not in the batch failed: %+v", m)
			}
			if !listed[m.ID()] {
				t.Fatalf("%s failed but was not listed", m.ID())
			}
			if !errors.Is(e, ErrReportedFailed) {
				t.Fatalf("%s failed with %v", m.ID(), e)
			}
		}
	})
}
