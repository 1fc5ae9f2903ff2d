package handlers

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// filter.go: the spec's filter, an event pattern in the style of Amazon
// EventBridge over a message's key, headers and JSON value. A pattern is
// compiled once, when the spec is read; matching allocates only to decode
// the value, and only when the pattern looks into it.
//
//	filter:
//	  key: [{prefix: "eu-"}]
//	  headers:
//	    ce-type: [order.created, order.paid]
//	  value:
//	    status: [{anything-but: [cancelled, test]}]
//	    total: [{numeric: [">", 0, "<=", 1000]}]
//	    customer:
//	      vip: [true]
//	      coupon: [{exists: false}]
//
// Every field named must match (AND); a field matches when any condition of
// its list does (OR); a JSON array in the value matches when any of its
// elements does.

// Filter is a compiled event pattern. The zero Filter and a nil *Filter
// match every message. A Filter is immutable and safe for concurrent use.
type Filter struct {
	raw map[string]any
	c   *compiledFilter
}

type compiledFilter struct {
	key     []cond      // nil: no pattern on the key
	headers []fieldCond // sorted by name
	value   *objPattern // nil: no pattern on the value
}

type objPattern struct{ fields []fieldCond }

// fieldCond is one named field: a nested object pattern or a list of
// alternative conditions.
type fieldCond struct {
	name  string
	sub   *objPattern
	conds []cond
}

type condKind uint8

const (
	condExact condKind = iota
	condPrefix
	condAnythingBut
	condNumeric
	condExists
)

// cond is one condition on a value. An exact value is a string, a number,
// a bool or null (kind, with str, num, b).
type cond struct {
	kind   condKind
	vtype  valueType
	str    string
	num    float64
	b      bool
	but    []cond // anything-but: exact values, or one prefix
	ranges []numRange
}

type valueType uint8

const (
	vString valueType = iota
	vNumber
	vBool
	vNull
)

type numRange struct {
	op  string
	num float64
}

// CompileFilter compiles a pattern (as decoded from YAML or JSON). Errors
// are *FieldError with paths under "filter".
func CompileFilter(pattern any) (*Filter, error) {
	c, err := compileFilter(pattern, "filter")
	if err != nil {
		return nil, err
	}
	raw, _ := normalizeRaw(pattern).(map[string]any)
	return &Filter{raw: raw, c: c}, nil
}

// LooksIntoValue reports whether the pattern has conditions on the value,
// so that a value that is not JSON cannot match it.
func (f *Filter) LooksIntoValue() bool { return f != nil && f.c != nil && f.c.value != nil }

// MarshalJSON writes the pattern as it was given.
func (f Filter) MarshalJSON() ([]byte, error) {
	if f.raw == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(f.raw)
}

// UnmarshalJSON reads and compiles a pattern.
func (f *Filter) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	g, err := CompileFilter(v)
	if err != nil {
		return err
	}
	*f = *g
	return nil
}

// checkYAML lets Parse report a bad pattern with its path.
func (f *Filter) checkYAML(v any, path string) error {
	_, err := compileFilter(v, path)
	return err
}

func compileFilter(v any, path string) (*compiledFilter, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &FieldError{Field: path, Msg: "must be an object with key, headers or value"}
	}
	if len(m) == 0 {
		return nil, &FieldError{Field: path, Msg: "must not be empty: name key, headers or value (leave filter out to take every message)"}
	}
	c := &compiledFilter{}
	for _, k := range sortedKeys(m) {
		p := join(path, k)
		var err error
		switch k {
		case "key":
			c.key, err = compileConds(m[k], p)
		case "headers":
			hs, ok := m[k].(map[string]any)
			if !ok || len(hs) == 0 {
				return nil, &FieldError{Field: p, Msg: "must be an object of header names to lists of conditions"}
			}
			for _, name := range sortedKeys(hs) {
				conds, err := compileConds(hs[name], join(p, name))
				if err != nil {
					return nil, err
				}
				c.headers = append(c.headers, fieldCond{name: name, conds: conds})
			}
		case "value":
			c.value, err = compileObject(m[k], p)
		default:
			return nil, &FieldError{Field: p, Msg: "unknown field: a filter looks at key, headers or value"}
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func compileObject(v any, path string) (*objPattern, error) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return nil, &FieldError{Field: path, Msg: "must be an object of field names to lists of conditions (or to nested objects)"}
	}
	o := &objPattern{}
	for _, k := range sortedKeys(m) {
		p := join(path, k)
		switch e := m[k].(type) {
		case map[string]any:
			sub, err := compileObject(e, p)
			if err != nil {
				return nil, err
			}
			o.fields = append(o.fields, fieldCond{name: k, sub: sub})
		default:
			conds, err := compileConds(e, p)
			if err != nil {
				return nil, err
			}
			o.fields = append(o.fields, fieldCond{name: k, conds: conds})
		}
	}
	return o, nil
}

func compileConds(v any, path string) ([]cond, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, &FieldError{Field: path, Msg: `must be a list of values or conditions, such as [a, b] or [{prefix: "a"}]`}
	}
	if len(l) == 0 {
		return nil, &FieldError{Field: path, Msg: "must not be an empty list: it would match nothing"}
	}
	out := make([]cond, 0, len(l))
	for i, e := range l {
		c, err := compileCond(e, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func compileCond(v any, path string) (cond, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return compileExact(v, path)
	}
	if len(m) != 1 {
		return cond{}, &FieldError{Field: path, Msg: "a condition must have exactly one of prefix, anything-but, numeric or exists"}
	}
	k := sortedKeys(m)[0]
	e, p := m[k], join(path, k)
	switch k {
	case "prefix":
		s, ok := e.(string)
		if !ok || s == "" {
			return cond{}, &FieldError{Field: p, Msg: "must be a non-empty string"}
		}
		return cond{kind: condPrefix, str: s}, nil
	case "exists":
		b, ok := e.(bool)
		if !ok {
			return cond{}, &FieldError{Field: p, Msg: "must be true or false"}
		}
		return cond{kind: condExists, b: b}, nil
	case "numeric":
		return compileNumeric(e, p)
	case "anything-but":
		return compileAnythingBut(e, p)
	}
	return cond{}, &FieldError{Field: p, Msg: "unknown condition: use prefix, anything-but, numeric or exists"}
}

func compileExact(v any, path string) (cond, error) {
	switch x := v.(type) {
	case string:
		return cond{kind: condExact, vtype: vString, str: x}, nil
	case bool:
		return cond{kind: condExact, vtype: vBool, b: x}, nil
	case nil:
		return cond{kind: condExact, vtype: vNull}, nil
	}
	if n, ok := toFloat(v); ok {
		return cond{kind: condExact, vtype: vNumber, num: n}, nil
	}
	return cond{}, &FieldError{Field: path, Msg: "must be a string, number, true, false, null or a condition object"}
}

func compileNumeric(v any, path string) (cond, error) {
	const usage = `must be a list of operator and number pairs, such as [">", 0, "<=", 100]`
	l, ok := v.([]any)
	if !ok || len(l) == 0 || len(l)%2 != 0 || len(l) > 4 {
		return cond{}, &FieldError{Field: path, Msg: usage}
	}
	c := cond{kind: condNumeric}
	for i := 0; i < len(l); i += 2 {
		op, ok := l[i].(string)
		switch op {
		case "=", ">", ">=", "<", "<=":
		default:
			if ok {
				return cond{}, &FieldError{Field: fmt.Sprintf("%s[%d]", path, i), Msg: fmt.Sprintf("unknown operator %q: use =, >, >=, < or <=", op)}
			}
			return cond{}, &FieldError{Field: path, Msg: usage}
		}
		n, ok := toFloat(l[i+1])
		if !ok {
			return cond{}, &FieldError{Field: fmt.Sprintf("%s[%d]", path, i+1), Msg: "must be a number"}
		}
		c.ranges = append(c.ranges, numRange{op: op, num: n})
	}
	if len(c.ranges) == 2 {
		lo, hi := c.ranges[0], c.ranges[1]
		if !strings.HasPrefix(lo.op, ">") || !strings.HasPrefix(hi.op, "<") || lo.num > hi.num {
			return cond{}, &FieldError{Field: path, Msg: `a range is a lower bound then an upper bound, such as [">", 0, "<=", 100]`}
		}
	}
	return c, nil
}

func compileAnythingBut(v any, path string) (cond, error) {
	c := cond{kind: condAnythingBut}
	switch x := v.(type) {
	case map[string]any:
		p, ok := x["prefix"].(string)
		if len(x) != 1 || !ok || p == "" {
			return cond{}, &FieldError{Field: path, Msg: `must be a value, a list of values, or {prefix: "..."}`}
		}
		c.but = []cond{{kind: condPrefix, str: p}}
	case []any:
		if len(x) == 0 {
			return cond{}, &FieldError{Field: path, Msg: "must not be an empty list"}
		}
		for i, e := range x {
			if _, ok := e.(map[string]any); ok {
				return cond{}, &FieldError{Field: fmt.Sprintf("%s[%d]", path, i), Msg: "must be a string, number, true, false or null"}
			}
			ec, err := compileExact(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return cond{}, err
			}
			c.but = append(c.but, ec)
		}
	default:
		ec, err := compileExact(v, path)
		if err != nil {
			return cond{}, err
		}
		c.but = []cond{ec}
	}
	return c, nil
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// normalizeRaw turns YAML's decoded numbers into float64, so a pattern
// read from YAML and the same one read back from JSON are equal.
func normalizeRaw(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeRaw(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeRaw(e)
		}
		return out
	case int, int64, uint64:
		f, _ := toFloat(x)
		return f
	}
	return v
}

// Match reports whether m matches the pattern. A value that is not JSON
// (or not a JSON object) matches only a pattern with no value conditions.
func (f *Filter) Match(m *Message) bool {
	if f == nil || f.c == nil {
		return true
	}
	c := f.c
	if c.key != nil {
		var key any
		present := m.Key != nil
		if present {
			key = text(m.Key)
		}
		if !matchConds(c.key, key, present) {
			return false
		}
	}
	for i := range c.headers {
		h := &c.headers[i]
		v, present := m.Header(h.name)
		var s any
		if present {
			s = text(v)
		}
		if !matchConds(h.conds, s, present) {
			return false
		}
	}
	if c.value != nil {
		var v any
		if err := json.Unmarshal(m.Value, &v); err != nil {
			return false
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		return c.value.match(obj)
	}
	return true
}

func (o *objPattern) match(obj map[string]any) bool {
	for i := range o.fields {
		f := &o.fields[i]
		v, present := obj[f.name]
		if f.sub != nil {
			if !f.sub.matchAny(v) {
				return false
			}
			continue
		}
		if !matchConds(f.conds, v, present) {
			return false
		}
	}
	return true
}

// matchAny matches a nested pattern against an object, any object of an
// array, or (absent or not an object) an empty object, so that exists:
// false holds under a missing parent.
func (o *objPattern) matchAny(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return o.match(x)
	case []any:
		for _, e := range x {
			if m, ok := e.(map[string]any); ok && o.match(m) {
				return true
			}
		}
		return false
	}
	return o.match(nil)
}

// matchConds reports whether any of conds matches v.
func matchConds(conds []cond, v any, present bool) bool {
	for i := range conds {
		if conds[i].match(v, present) {
			return true
		}
	}
	return false
}

func (c *cond) match(v any, present bool) bool {
	if c.kind == condExists {
		return present == c.b
	}
	if !present {
		return false
	}
	if l, ok := v.([]any); ok {
		for _, e := range l {
			if c.matchScalar(e) {
				return true
			}
		}
		return false
	}
	return c.matchScalar(v)
}

func (c *cond) matchScalar(v any) bool {
	switch c.kind {
	case condExact:
		return c.equal(v)
	case condPrefix:
		s, ok := asString(v)
		return ok && strings.HasPrefix(s, c.str)
	case condAnythingBut:
		for i := range c.but {
			if c.but[i].matchScalar(v) {
				return false
			}
		}
		return true
	case condNumeric:
		n, ok := numberOf(v)
		if !ok {
			return false
		}
		for _, r := range c.ranges {
			var in bool
			switch r.op {
			case "=":
				in = n == r.num
			case ">":
				in = n > r.num
			case ">=":
				in = n >= r.num
			case "<":
				in = n < r.num
			case "<=":
				in = n <= r.num
			}
			if !in {
				return false
			}
		}
		return true
	}
	return false
}

func (c *cond) equal(v any) bool {
	switch c.vtype {
	case vString:
		s, ok := asString(v)
		return ok && s == c.str
	case vNumber:
		n, ok := v.(float64)
		return ok && n == c.num
	case vBool:
		b, ok := v.(bool)
		return ok && b == c.b
	case vNull:
		return v == nil
	}
	return false
}

// text is a key or a header value: a string that a numeric condition may
// read as a number, unlike a JSON string.
type text string

func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case text:
		return string(x), true
	}
	return "", false
}

// numberOf reads a JSON number, or a key or header that is a number
// written as text.
func numberOf(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case text:
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	return 0, false
}
