package handlers

import (
	"encoding/json"
	"fmt"
	"strings"
)

// takeover.go: startFrom: {group: NAME}, taking over a legacy consumer
// group. The handler starts each partition of its topic exactly where that
// group committed (no gap, no re-processing), once the group has no
// active members.

// startGroupPrefix marks a StartFrom that names a group to take over.
const startGroupPrefix = "group:"

// StartFromGroup is the StartFrom that takes over group: written
// startFrom: {group: NAME} in a spec.
func StartFromGroup(group string) StartFrom { return StartFrom(startGroupPrefix + group) }

// TakeoverGroup returns the legacy group s takes over, if it names one.
func (s StartFrom) TakeoverGroup() (string, bool) {
	return strings.CutPrefix(string(s), startGroupPrefix)
}

// MarshalJSON writes earliest and latest as strings and a takeover as
// {"group": NAME}.
func (s StartFrom) MarshalJSON() ([]byte, error) {
	if g, ok := s.TakeoverGroup(); ok {
		return json.Marshal(map[string]string{"group": g})
	}
	return json.Marshal(string(s))
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *StartFrom) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		if strings.HasPrefix(str, startGroupPrefix) {
			return fmt.Errorf("startFrom: write a takeover as {group: NAME}")
		}
		*s = StartFrom(str)
		return nil
	}
	var obj struct {
		Group string `json:"group"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("startFrom: must be earliest, latest or {group: NAME}")
	}
	*s = StartFromGroup(obj.Group)
	return nil
}

// checkYAML lets Parse report a malformed startFrom with its path.
func (s *StartFrom) checkYAML(v any, path string) error {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, startGroupPrefix) {
			return &FieldError{Field: path, Msg: "write a takeover as {group: NAME}"}
		}
		return nil
	case map[string]any:
		for k, e := range x {
			if k != "group" {
				return &FieldError{Field: join(path, k), Msg: "unknown field: startFrom takes {group: NAME}"}
			}
			if _, ok := e.(string); !ok {
				return &FieldError{Field: join(path, k), Msg: "must be a string"}
			}
		}
		return nil
	}
	return &FieldError{Field: path, Msg: "must be earliest, latest or {group: NAME}"}
}

// validateStartFrom checks startFrom.
func (s *Spec) validateStartFrom() error {
	g, ok := s.StartFrom.TakeoverGroup()
	if !ok {
		switch s.StartFrom {
		case StartEarliest, StartLatest:
			return nil
		}
		return &FieldError{Field: "startFrom", Msg: fmt.Sprintf("must be earliest, latest or {group: NAME}, got %q", s.StartFrom)}
	}
	switch {
	case g == "":
		return &FieldError{Field: "startFrom.group", Msg: "is required: the consumer group to take over"}
	case len(g) > 249 || strings.ContainsAny(g, "\x00\n\r"):
		return &FieldError{Field: "startFrom.group", Msg: fmt.Sprintf("%q is not a valid group id", g)}
	case g == s.Group():
		return &FieldError{Field: "startFrom.group", Msg: fmt.Sprintf("%q is the handler's own group", g)}
	case s.Source.IsQueue():
		return &FieldError{Field: "startFrom.group", Msg: "takes over a Kafka consumer group: only with source kafka"}
	}
	return nil
}
