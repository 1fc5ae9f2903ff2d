package handlers

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Concurrency is a handler's in-flight limit on one node: fixed when Min
// equals Max, else adaptive between them (the engine raises it while there
// is a backlog and latency holds, and lowers it when latency rises or the
// downstream fails). In YAML and JSON a number is a fixed limit and
// {min, max} an adaptive one.
type Concurrency struct {
	Min int
	Max int
}

// Fixed is a fixed limit of n.
func Fixed(n int) Concurrency { return Concurrency{Min: n, Max: n} }

// Adaptive is a limit that adapts between min and max.
func Adaptive(min, max int) Concurrency { return Concurrency{Min: min, Max: max} }

// IsAdaptive reports whether the limit adapts.
func (c Concurrency) IsAdaptive() bool { return c.Min != c.Max }

// IsZero reports whether the limit is unset.
func (c Concurrency) IsZero() bool { return c.Min == 0 && c.Max == 0 }

func (c Concurrency) String() string {
	if c.IsAdaptive() {
		return fmt.Sprintf("%d..%d (adaptive)", c.Min, c.Max)
	}
	return fmt.Sprint(c.Max)
}

// MarshalJSON writes a number for a fixed limit and {min, max} otherwise.
func (c Concurrency) MarshalJSON() ([]byte, error) {
	if !c.IsAdaptive() {
		return json.Marshal(c.Max)
	}
	return json.Marshal(struct {
		Min int `json:"min"`
		Max int `json:"max"`
	}{c.Min, c.Max})
}

// UnmarshalJSON reads a number or {min, max}.
func (c *Concurrency) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*c = Fixed(n)
		return nil
	}
	var o struct {
		Min int `json:"min"`
		Max int `json:"max"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("concurrency must be a number or {min, max}")
	}
	*c = Concurrency{Min: o.Min, Max: o.Max}
	return nil
}

// checkYAML lets Parse report the field path of a malformed limit.
func (c *Concurrency) checkYAML(v any, path string) error {
	whole := func(x any, p string) error {
		switch n := x.(type) {
		case int:
			return nil
		case float64:
			if n == math.Trunc(n) {
				return nil
			}
		}
		return &FieldError{Field: p, Msg: "must be a whole number"}
	}
	switch x := v.(type) {
	case int, float64:
		return whole(x, path)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k != "min" && k != "max" {
				return &FieldError{Field: path + "." + k, Msg: "unknown field"}
			}
			if err := whole(x[k], path+"."+k); err != nil {
				return err
			}
		}
		if _, ok := x["max"]; !ok {
			return &FieldError{Field: path + ".max", Msg: "is required"}
		}
		return nil
	}
	return &FieldError{Field: path, Msg: "must be a whole number or {min, max}"}
}

func (c *Concurrency) normalize() {
	if c.IsZero() {
		*c = Adaptive(DefaultConcurrencyMin, DefaultConcurrencyMax)
	}
	if c.Min == 0 && c.Max > 0 {
		c.Min = 1
	}
}

func (c Concurrency) validate() error {
	switch {
	case c.Min < 1 || c.Min > MaxConcurrency:
		f := "concurrency"
		if c.IsAdaptive() {
			f = "concurrency.min"
		}
		return &FieldError{Field: f, Msg: fmt.Sprintf("must be between 1 and %d, got %d", MaxConcurrency, c.Min)}
	case c.Max < c.Min || c.Max > MaxConcurrency:
		return &FieldError{Field: "concurrency.max", Msg: fmt.Sprintf("must be between concurrency.min (%d) and %d, got %d", c.Min, MaxConcurrency, c.Max)}
	}
	return nil
}
