package api

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzDecodePublish: any body decodes to records or an error, never a
// panic; what is accepted is valid UTF-8 within the message cap, and a
// string value comes out byte for byte as sent.
func FuzzDecodePublish(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"key":"k","value":"v","headers":{"a":"b"},"partition":1}]}`,
		`{"messages":[{"valueBase64":"AP8="},{"value":{"n":1}},{}]}`,
		`{"messages":[]}`, `{"messages":null}`, `{}`, `[]`, `{"messages":[1]}`,
		`{"messages":[{"value":"a\ud800b"}]}`, "{\"messages\":[{\"value\":\"\xff\"}]}",
		`{"messages":[{"value":"\ufffd"}]} x`, `{"messages":[{"vaule":1}]}`, `{"messages":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := decodePublish(body)
		if err != nil {
			if recs != nil {
				t.Fatalf("records with an error: %v", err)
			}
			return
		}
		if !utf8.Valid(body) || len(recs) == 0 || len(recs) > MaxPublishMessages {
			t.Fatalf("accepted %d records from %q", len(recs), body)
		}
		var req PublishRequest
		if json.Unmarshal(body, &req) != nil || len(req.Messages) != len(recs) {
			return // encoding/json disagrees on shape: not this check's business
		}
		for i, m := range req.Messages {
			if len(m.Value) > 0 && m.Value[0] == '"' {
				var s string
				if json.Unmarshal(m.Value, &s) == nil && !bytes.Equal([]byte(s), recs[i].Value) {
					t.Fatalf("message %d: value %q, want %q", i, recs[i].Value, s)
				}
			}
		}
	})
}
