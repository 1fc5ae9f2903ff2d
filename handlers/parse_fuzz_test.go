package handlers_test

import (
	"encoding/json"
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

// FuzzParse: any input parses to valid specs or an error, never a panic;
// an accepted spec survives its JSON form (the registry's) unchanged in
// validity, as the registry reads it back.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name: a\ntopic: t\nhttp:\n  url: http://h/\n",
		`{"name":"a","topic":"t","http":{"url":"https://u:p@h/","headers":{"A":"1"},"timeout":"1s"},"retry":{"maxBackoff":"1h"}}`,
		`{"name":"a","topic":"t","go":{},"ordering":"none","retry":{"mode":"topics","delays":["10s"]}}`,
		`{"name":"a","topic":"t","http":{"url":"http://h/"},"deadLetter":{"topic":"__sluice_handlers"}}`,
		`{"name":"a","topic":"t","http":{"url":"http://h/"},"concurrency":{"min":1,"max":5},"rateLimit":0.5}`,
		"name: a\n---\nname: b\n", "", "[", "{}", `{"name":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := handlers.Parse(data)
		if err != nil {
			return
		}
		for _, s := range specs {
			if err := s.Validate(); err != nil {
				t.Fatalf("Parse accepted an invalid spec: %v", err)
			}
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			var back handlers.Spec
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("the registry could not read back %s: %v", b, err)
			}
			back.Normalize()
			if err := back.Validate(); err != nil {
				t.Fatalf("read back from %s, the spec is invalid: %v", b, err)
			}
		}
	})
}
