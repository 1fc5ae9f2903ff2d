package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Parse reads one or more specs from YAML (several documents separated by
// "---") or JSON. Unknown fields and values of the wrong type are rejected
// with a *FieldError naming the field path. The specs are normalized and
// validated; with several documents, the error names the document.
func Parse(data []byte) ([]Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var specs []Spec
	for doc := 1; ; doc++ {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: malformed YAML or JSON: %s", doc, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if v == nil {
			continue
		}
		s, err := decodeSpec(v)
		if err == nil {
			s.Normalize()
			err = s.Validate()
		}
		if err != nil {
			if doc > 1 || dec.Decode(new(any)) == nil {
				var fe *FieldError
				if errors.As(err, &fe) {
					return nil, &FieldError{Field: fe.Field, Msg: fe.Msg + fmt.Sprintf(" (document %d)", doc)}
				}
				return nil, fmt.Errorf("document %d: %w", doc, err)
			}
			return nil, err
		}
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		return nil, errors.New("no handler spec found in the input")
	}
	return specs, nil
}

// ParseOne reads exactly one spec.
func ParseOne(data []byte) (Spec, error) {
	specs, err := Parse(data)
	if err != nil {
		return Spec{}, err
	}
	if len(specs) != 1 {
		return Spec{}, fmt.Errorf("expected one handler spec, got %d", len(specs))
	}
	return specs[0], nil
}

func decodeSpec(v any) (Spec, error) {
	var s Spec
	if err := checkValue(v, reflect.TypeFor[Spec](), ""); err != nil {
		return s, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return s, fmt.Errorf("spec cannot be read: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return s, &FieldError{Field: te.Field, Msg: "must be " + kindName(te.Type)}
		}
		return s, fmt.Errorf("spec cannot be read: %w", err)
	}
	return s, nil
}

var durationType = reflect.TypeFor[Duration]()

// checkValue walks a decoded YAML value against the Go type it must fill,
// rejecting unknown fields and wrong kinds with the path of the field.
func checkValue(v any, t reflect.Type, path string) error {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil
	}
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			return &FieldError{Field: path, Msg: "must be a duration such as \"500ms\" or \"30s\""}
		}
		if _, err := time.ParseDuration(s); err != nil {
			return &FieldError{Field: path, Msg: fmt.Sprintf("must be a duration such as \"500ms\" or \"30s\", got %q", s)}
		}
		return nil
	}
	if u, ok := reflect.New(t).Interface().(interface{ checkYAML(any, string) error }); ok {
		return u.checkYAML(v, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return &FieldError{Field: path, Msg: "must be an object"}
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				return &FieldError{Field: join(path, k), Msg: "unknown field"}
			}
			if err := checkValue(m[k], f.Type, join(path, k)); err != nil {
				return err
			}
			if f.Tag.Get("sluice") == "nonzero" && isZero(m[k]) {
				return &FieldError{Field: join(path, k), Msg: "must not be zero (leave it out for the default)"}
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return &FieldError{Field: path, Msg: "must be an object"}
		}
		for k, e := range m {
			if err := checkValue(e, t.Elem(), join(path, k)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return &FieldError{Field: path, Msg: "must be a list"}
		}
		for i, e := range l {
			if err := checkValue(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return &FieldError{Field: path, Msg: "must be a string"}
		}
	case reflect.Int, reflect.Int32, reflect.Int64:
		switch n := v.(type) {
		case int:
		case float64:
			if n != math.Trunc(n) {
				return &FieldError{Field: path, Msg: "must be a whole number"}
			}
		default:
			return &FieldError{Field: path, Msg: "must be a whole number"}
		}
	case reflect.Float64:
		switch v.(type) {
		case int, float64:
		default:
			return &FieldError{Field: path, Msg: "must be a number"}
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return &FieldError{Field: path, Msg: "must be true or false"}
		}
	}
	return nil
}

func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := make(map[string]reflect.StructField, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		return "a list"
	}
	return t.String()
}

func isZero(v any) bool {
	switch n := v.(type) {
	case int:
		return n == 0
	case float64:
		return n == 0
	case string:
		d, err := time.ParseDuration(n)
		return err == nil && d == 0
	}
	return false
}
