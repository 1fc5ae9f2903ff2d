package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/handlers"
)

// MaxPublishMessages bounds the messages of one publish request; more is
// 413. With the byte bound (ServerConfig.MaxPublishBytes) it bounds the
// memory one request holds: a body of empty messages ({},{},...) is small in
// bytes but not in messages.
const MaxPublishMessages = 10000

// errTooManyMessages is a publish request over MaxPublishMessages.
var errTooManyMessages = fmt.Errorf("a publish request holds at most %d messages: split it", MaxPublishMessages)

// decodePublish reads a PublishRequest body one message at a time, turning
// each into a Record as it goes, so that no more than MaxPublishMessages
// are ever held and no intermediate []PublishMessage is built. Unknown
// fields, wrong types and invalid UTF-8 are refused with the field named.
func decodePublish(body []byte) ([]Record, error) {
	if !utf8.Valid(body) {
		// encoding/json would silently replace the bad bytes with U+FFFD:
		// what is published must be what was sent.
		i := 0
		for i < len(body) {
			r, n := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return nil, fmt.Errorf("request body is not valid UTF-8 (at byte %d): send binary values as valueBase64", i)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	var recs []Record
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		key, _ := tok.(string)
		if key != "messages" {
			return nil, &handlers.FieldError{Field: key, Msg: "unknown field"}
		}
		if seen {
			return nil, &handlers.FieldError{Field: "messages", Msg: "is given twice"}
		}
		seen = true
		if recs, err = decodeMessages(dec); err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("malformed JSON: trailing data after the object")
	}
	if len(recs) == 0 {
		return nil, &handlers.FieldError{Field: "messages", Msg: "at least one message is required"}
	}
	return recs, nil
}

func decodeMessages(dec *json.Decoder) ([]Record, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed(err)
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, &handlers.FieldError{Field: "messages", Msg: "must be a list"}
	}
	var recs []Record
	for i := 0; dec.More(); i++ {
		if i == MaxPublishMessages {
			return nil, errTooManyMessages
		}
		field := func(f string) string { return fmt.Sprintf("messages[%d].%s", i, f) }
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, malformed(err)
		}
		var m PublishMessage
		if err := strictUnmarshal(raw, &m); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				if te.Field == "" {
					return nil, &handlers.FieldError{Field: fmt.Sprintf("messages[%d]", i), Msg: "must be an object"}
				}
				return nil, &handlers.FieldError{Field: field(te.Field), Msg: "has the wrong type"}
			}
			if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				return nil, &handlers.FieldError{Field: field(strings.Trim(msg, `"`)), Msg: "unknown field"}
			}
			return nil, malformed(err)
		}
		if replaced(raw, m) {
			return nil, &handlers.FieldError{Field: fmt.Sprintf("messages[%d]", i),
				Msg: `holds an escaped lone surrogate (\ud800-\udfff), which is not valid UTF-8: send binary values as valueBase64`}
		}
		rec, err := toRecord(m)
		if err != nil {
			var fe *handlers.FieldError
			if errors.As(err, &fe) {
				fe.Field = field(fe.Field)
			}
			return nil, err
		}
		recs = append(recs, rec)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return nil, err
	}
	return recs, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		if want == '{' {
			return errors.New("malformed JSON: the body must be an object")
		}
		return fmt.Errorf("malformed JSON: expected %q, got %v", want, tok)
	}
	return nil
}

func malformed(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("malformed JSON: unexpected end of input")
	}
	return fmt.Errorf("malformed JSON: %w", err)
}

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// replaced reports whether decoding m from raw replaced something with
// U+FFFD: encoding/json does so, silently, for an escaped lone surrogate
// such as "\ud800". A U+FFFD that raw itself holds is not a replacement.
func replaced(raw []byte, m PublishMessage) bool {
	has := func(s string) bool { return strings.ContainsRune(s, utf8.RuneError) }
	found := m.Key != nil && has(*m.Key) || has(m.ValueBase64)
	if len(m.Value) > 0 && m.Value[0] == '"' {
		var v string
		found = found || json.Unmarshal(m.Value, &v) == nil && has(v)
	}
	for k, v := range m.Headers {
		found = found || has(k) || has(v)
	}
	if !found {
		return false
	}
	return !bytes.ContainsRune(raw, utf8.RuneError) && !bytes.Contains(bytes.ToLower(raw), []byte(`\ufffd`))
}
