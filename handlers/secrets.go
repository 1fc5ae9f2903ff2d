package handlers

import (
	"fmt"
	"net/url"
	"sort"
)

// Secrets in a spec are write-only: the values of http.headers (an
// Authorization header, an API key) and the password in http.url
// (https://user:pass@host/). Whatever shows a spec (the API, so the CLI and
// the dashboard; logs; dead-letter error text) shows Redacted in their
// place, and a spec applied back with Redacted keeps the stored value
// (KeepSecrets).

// Redacted stands for a secret that is set.
const Redacted = "(set)"

// Redacted returns a copy of s whose secrets read Redacted. s is unchanged.
func (s Spec) Redacted() Spec {
	if s.HTTP == nil {
		return s
	}
	h := *s.HTTP
	h.URL = RedactURL(h.URL)
	if len(h.Headers) > 0 {
		hs := make(map[string]string, len(h.Headers))
		for k := range h.Headers {
			hs[k] = Redacted
		}
		h.Headers = hs
	}
	s.HTTP = &h
	return s
}

// RedactURL replaces the password of u, if it has one, with Redacted. A
// URL that does not parse is returned whole only if it has no '@' (it
// cannot hold a password then); else Redacted alone.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		for i := 0; i < len(u); i++ {
			if u[i] == '@' {
				return Redacted
			}
		}
		return u
	}
	if _, ok := p.User.Password(); !ok {
		return u
	}
	p.User = url.UserPassword(p.User.Username(), "REDACTED")
	// UserPassword would escape "(set)"; put it in by hand.
	s := p.String()
	return replaceOnce(s, ":REDACTED@", ":"+Redacted+"@")
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

// KeepSecrets puts the stored secrets of old (nil when the handler is new)
// where s says Redacted: a spec read back and applied again keeps them. A
// Redacted with nothing stored behind it is a *FieldError.
func (s *Spec) KeepSecrets(old *Spec) error {
	if s.HTTP == nil {
		return nil
	}
	var oh *HTTPSpec
	if old != nil {
		oh = old.HTTP
	}
	keys := make([]string, 0, len(s.HTTP.Headers))
	for k := range s.HTTP.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s.HTTP.Headers[k] != Redacted {
			continue
		}
		v, ok := "", false
		if oh != nil {
			v, ok = oh.Headers[k]
		}
		if !ok {
			return &FieldError{Field: "http.headers." + k, Msg: Redacted + " stands for the stored value, but this handler has none: give the value"}
		}
		s.HTTP.Headers[k] = v
	}
	p, err := url.Parse(s.HTTP.URL)
	if err != nil {
		return nil // Validate names it
	}
	if pw, ok := p.User.Password(); !ok || pw != Redacted {
		return nil
	}
	if oh != nil && RedactURL(oh.URL) == s.HTTP.URL {
		s.HTTP.URL = oh.URL // the same URL read back: keep it byte for byte
		return nil
	}
	var stored string
	var found bool
	if oh != nil {
		if op, err := url.Parse(oh.URL); err == nil && op.User.Username() == p.User.Username() {
			stored, found = op.User.Password()
		}
	}
	if !found {
		return &FieldError{Field: "http.url", Msg: fmt.Sprintf("the password %s stands for the stored one, but this handler has none for user %q: give the password", Redacted, p.User.Username())}
	}
	p.User = url.UserPassword(p.User.Username(), stored)
	s.HTTP.URL = p.String()
	return nil
}
