package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/handlers"
)

// takeVersion finds the version a PUT of a spec was made over: the If-Match
// header ("57" or 57), or a top-level "version" beside the spec's fields
// (what a Handler read back carries), which it removes from body. Without
// either it returns AnyVersion. Both, disagreeing, is an error.
func takeVersion(body []byte, ifMatch string) ([]byte, int64, error) {
	version := int64(AnyVersion)
	if ifMatch != "" {
		v, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(ifMatch), `"`), 10, 64)
		if err != nil || v < 0 {
			return nil, 0, &handlers.FieldError{Field: "If-Match", Msg: fmt.Sprintf("must be the handler's version, a whole number (from GET), got %q", ifMatch)}
		}
		version = v
	}
	var doc map[string]any
	if yaml.Unmarshal(body, &doc) != nil {
		return body, version, nil // one spec or not, ParseOne says what is wrong
	}
	raw, ok := doc["version"]
	if !ok {
		return body, version, nil
	}
	var v int64
	switch n := raw.(type) {
	case int:
		v = int64(n)
	case float64:
		if n != math.Trunc(n) || n > math.MaxInt64 {
			v = -1
		} else {
			v = int64(n)
		}
	default:
		v = -1
	}
	if v < 0 {
		return nil, 0, &handlers.FieldError{Field: "version", Msg: fmt.Sprintf("must be the handler's version, a whole number (from GET), got %v", raw)}
	}
	if version != AnyVersion && version != v {
		return nil, 0, &handlers.FieldError{Field: "version", Msg: fmt.Sprintf("is %d but If-Match says %d", v, version)}
	}
	delete(doc, "version")
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, 0, fmt.Errorf("spec cannot be read: %w", err)
	}
	return b, v, nil
}
