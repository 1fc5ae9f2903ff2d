package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// The config file, the SLUICE_* variables and the serve flags all name the
// same keys: a key's path in the file (kafka.sasl.mechanism) gives its
// variable (SLUICE_KAFKA_SASL_MECHANISM) and its flag
// (--kafka-sasl-mechanism). Each layer is read into a Config by the same
// parser, so a value means the same wherever it is written, and the layers
// are applied in one order: flags over environment over file over defaults.

// Key is one settable leaf of Config.
type Key struct {
	// Path is the key in the config file, such as "kafka.sasl.mechanism".
	Path string
	// Flag is the serve flag without dashes, such as "kafka-sasl-mechanism";
	// empty for a key that only the file sets (api.tokens).
	Flag string
	// Env is the environment variable, such as "SLUICE_KAFKA_SASL_MECHANISM";
	// empty when Flag is.
	Env string
	// Secret keys are never printed.
	Secret bool

	index []int
	typ   reflect.Type
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	tokensType   = reflect.TypeFor[[]Token]()
)

// Keys lists every key of Config, in the order of the struct.
func Keys() []Key { return keysOf(reflect.TypeFor[Config](), "", nil) }

func keysOf(t reflect.Type, prefix string, index []int) []Key {
	var out []Key
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		path := prefix + name
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			out = append(out, keysOf(f.Type, path+".", idx)...)
			continue
		}
		k := Key{Path: path, Secret: f.Tag.Get("secret") == "true", index: idx, typ: f.Type}
		if f.Type != tokensType {
			k.Flag = kebab(path)
			k.Env = "SLUICE_" + strings.ToUpper(strings.ReplaceAll(k.Flag, "-", "_"))
		}
		out = append(out, k)
	}
	return out
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// kebab turns a key path into a flag name: "kafka.tls.caFile" is
// "kafka-tls-ca-file", "tokenSHA256" is "token-sha256".
func kebab(path string) string {
	var b strings.Builder
	rs := []rune(path)
	for i, r := range rs {
		switch {
		case r == '.':
			b.WriteByte('-')
		case unicode.IsUpper(r):
			prevLower := i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]))
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if i > 0 && rs[i-1] != '.' && (prevLower || nextLower && unicode.IsUpper(rs[i-1])) {
				b.WriteByte('-')
			}
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// KeyByFlag finds the key that a serve flag sets.
func KeyByFlag(flag string) (Key, bool) {
	for _, k := range Keys() {
		if k.Flag != "" && k.Flag == flag {
			return k, true
		}
	}
	return Key{}, false
}

// Set parses value into cfg's field for k, the way every layer does:
// durations as "30s", booleans as true/false, lists comma-separated.
func (k Key) Set(cfg *Config, value string) error {
	v := reflect.ValueOf(cfg).Elem().FieldByIndex(k.index)
	if err := setScalar(v, value); err != nil {
		return fmt.Errorf("%s: %w", k.Path, err)
	}
	return nil
}

func setScalar(v reflect.Value, s string) error {
	s = strings.TrimSpace(s)
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 500ms or 30s, got %q", s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v.OverflowInt(n) {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return errors.New("cannot be set from a string")
	}
	return nil
}

// ApplyEnv sets every key whose SLUICE_* variable is set and not empty.
func ApplyEnv(cfg *Config, getenv func(string) string) error {
	for _, k := range Keys() {
		if k.Env == "" {
			continue
		}
		if v := getenv(k.Env); v != "" {
			if err := k.Set(cfg, v); err != nil {
				return fmt.Errorf("%s (from %s)", err, k.Env)
			}
		}
	}
	return nil
}

// LoadFile reads a config file onto cfg: each key the file has replaces
// cfg's value (a zero too, which Validate then judges), the others stay.
// Unknown keys, keys set twice and values of the wrong type are refused
// with their path, and cfg is left as it was.
func LoadFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the config file: %w", err)
	}
	root, err := parseYAML(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	out := *cfg
	out.Brokers = append([]string(nil), cfg.Brokers...)
	out.API.Tokens = append([]Token(nil), cfg.API.Tokens...)
	if root != nil {
		if err := decodeNode(root, reflect.ValueOf(&out).Elem(), ""); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	*cfg = out
	return nil
}

// LoadTokensFile reads api.tokensFile: a YAML list of tokens.
func LoadTokensFile(path string) ([]Token, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api.tokensFile: %w", err)
	}
	root, err := parseYAML(b)
	if err != nil {
		return nil, fmt.Errorf("api.tokensFile %s: %w", path, err)
	}
	var ts []Token
	if root != nil {
		if err := decodeNode(root, reflect.ValueOf(&ts).Elem(), "api.tokensFile"); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := validateTokens("api.tokensFile", ts); err != nil {
		return nil, err
	}
	return ts, nil
}

func parseYAML(b []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("malformed YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, errors.New("holds more than one YAML document")
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// decodeNode fills v from n, refusing what does not fit, with the path.
func decodeNode(n *yaml.Node, v reflect.Value, path string) error {
	at := func(msg string, args ...any) error {
		p := path
		if p == "" {
			p = "(top level)"
		}
		return fmt.Errorf("%s: %s (line %d)", p, fmt.Sprintf(msg, args...), n.Line)
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	switch {
	case v.Kind() == reflect.Struct && v.Type() != durationType:
		if n.Kind != yaml.MappingNode {
			return at("want a mapping of keys")
		}
		fields := map[string]int{}
		for i := 0; i < v.NumField(); i++ {
			if name := yamlName(v.Type().Field(i)); name != "" {
				fields[name] = i
			}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			p := key
			if path != "" {
				p = path + "." + key
			}
			fi, ok := fields[key]
			if !ok {
				return fmt.Errorf("%s: unknown key (line %d)", p, n.Content[i].Line)
			}
			if seen[key] {
				return fmt.Errorf("%s: set twice (line %d)", p, n.Content[i].Line)
			}
			seen[key] = true
			if err := decodeNode(val, v.Field(fi), p); err != nil {
				return err
			}
		}
		return nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			return at("want a list")
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			if err := decodeNode(e, out.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	case v.Kind() == reflect.Slice:
		switch n.Kind {
		case yaml.SequenceNode:
			list := make([]string, 0, len(n.Content))
			for i, e := range n.Content {
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("%s[%d]: want a string (line %d)", path, i, e.Line)
				}
				list = append(list, strings.TrimSpace(e.Value))
			}
			v.Set(reflect.ValueOf(list))
			return nil
		case yaml.ScalarNode:
			if err := setScalar(v, n.Value); err != nil {
				return at("%s", err)
			}
			return nil
		}
		return at("want a list")
	}
	if n.Kind != yaml.ScalarNode {
		return at("want a single value, not a list or mapping")
	}
	if err := setScalar(v, n.Value); err != nil {
		return at("%s", err)
	}
	return nil
}

// Print writes cfg as the YAML of a config file, with every secret that
// is set shown as "(set)".
func Print(cfg Config) ([]byte, error) {
	n := printNode(reflect.ValueOf(cfg))
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	_ = enc.Close()
	return b.Bytes(), nil
}

func printNode(v reflect.Value) *yaml.Node {
	switch {
	case v.Type() == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: time.Duration(v.Int()).String()}
	case v.Kind() == reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			val := printNode(v.Field(i))
			if f.Tag.Get("secret") == "true" && v.Field(i).String() != "" {
				val = &yaml.Node{Kind: yaml.ScalarNode, Value: "(set)"}
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, val)
		}
		return m
	case v.Kind() == reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := 0; i < v.Len(); i++ {
			s.Content = append(s.Content, printNode(v.Index(i)))
		}
		if v.Type().Elem().Kind() == reflect.Struct && v.Len() > 0 {
			s.Style = 0
		}
		return s
	case v.Kind() == reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: v.String(), Style: quoteIfNeeded(v.String())}
	default:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: fmt.Sprint(v.Interface())}
	}
}

func quoteIfNeeded(s string) yaml.Style {
	if s == "" {
		return yaml.DoubleQuotedStyle
	}
	return 0
}

// checkRef checks a secret reference: env:NAME or file:PATH.
func checkRef(ref string) error {
	switch {
	case strings.HasPrefix(ref, "env:") && len(ref) > 4:
	case strings.HasPrefix(ref, "file:") && len(ref) > 5:
	default:
		return fmt.Errorf("want env:NAME or file:PATH, got %q", ref)
	}
	return nil
}

// ResolveRef reads a secret reference. A file's content is trimmed of
// surrounding whitespace. The error never holds the secret.
func ResolveRef(ref string) (string, error) {
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		v, set := os.LookupEnv(name)
		if !set || v == "" {
			return "", fmt.Errorf("%s: the variable is not set", ref)
		}
		return v, nil
	}
	if path, ok := strings.CutPrefix(ref, "file:"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", ref, errors.Unwrap(err))
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s: the file is empty", ref)
		}
		return v, nil
	}
	return "", checkRef(ref)
}

// Default is k's value in cfg (DefaultConfig's, for a flag's default).
func (k Key) Default(cfg Config) any {
	return reflect.ValueOf(cfg).FieldByIndex(k.index).Interface()
}

// ValidationError is a configuration that was read but is not valid.
type ValidationError struct{ Err error }

func (e *ValidationError) Error() string { return e.Err.Error() }
func (e *ValidationError) Unwrap() error { return e.Err }
