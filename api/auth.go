package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Role is what a token may do. Each role may do what the ones below it
// may.
type Role int

// The roles, lowest first.
const (
	RoleNone Role = iota
	// RoleViewer reads everything and sees the dashboard.
	RoleViewer
	// RolePublisher also publishes.
	RolePublisher
	// RoleAdmin also applies, deletes, pauses, resumes, replays and purges,
	// and creates topics.
	RoleAdmin
)

// ParseRole reads "viewer", "publisher" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "publisher":
		return RolePublisher, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("want viewer, publisher or admin, got %q", s)
}

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RolePublisher:
		return "publisher"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// Token is one accepted bearer token, by its SHA-256: the token itself is
// not kept.
type Token struct {
	Name   string
	Role   Role
	SHA256 [sha256.Size]byte
}

// Auth checks bearer tokens. Failed attempts are rate-limited per client
// address (the connection's, not X-Forwarded-For, which anyone can write):
// an address that fails too often gets 429 for every request that needs a
// token until its budget refills. Safe for concurrent use.
type Auth struct {
	tokens []Token

	// FailureBurst failures are allowed at once from one address, then
	// one per FailureEvery. Defaults 10 and 1s.
	failureBurst int
	failureEvery time.Duration

	mu       sync.Mutex
	failures map[string]*rate.Limiter
}

// maxTrackedAddrs bounds the failure table: past it, addresses whose
// budget is full are forgotten first.
const maxTrackedAddrs = 10000

// NewAuth returns an Auth accepting tokens; it needs at least one.
func NewAuth(tokens []Token) (*Auth, error) {
	if len(tokens) == 0 {
		return nil, errors.New("no tokens")
	}
	return &Auth{tokens: tokens, failureBurst: 10, failureEvery: time.Second, failures: map[string]*rate.Limiter{}}, nil
}

// HashToken is the SHA-256 of a token, as Token.SHA256 holds it.
func HashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// match finds the token presented. Every token is compared, in constant
// time, so how long it takes tells nothing of which or how much matched.
func (a *Auth) match(presented string) (Token, bool) {
	h := HashToken(presented)
	var found Token
	ok := 0
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare(h[:], t.SHA256[:]) == 1 {
			found, ok = t, 1
		}
	}
	return found, ok == 1
}

func (a *Auth) limiter(addr string) *rate.Limiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.failures[addr]
	if !ok {
		if len(a.failures) >= maxTrackedAddrs {
			for k, v := range a.failures {
				if v.Tokens() >= float64(a.failureBurst) {
					delete(a.failures, k)
				}
			}
		}
		if len(a.failures) >= maxTrackedAddrs {
			// Still full: the unknown share one budget.
			addr = ""
			if l, ok = a.failures[addr]; ok {
				return l
			}
		}
		l = rate.NewLimiter(rate.Every(a.failureEvery), a.failureBurst)
		a.failures[addr] = l
	}
	return l
}

type roleKey struct{}

// RoleOf is the role of the request's token; RoleAdmin when the API has no
// tokens (it is open).
func RoleOf(ctx context.Context) Role {
	if r, ok := ctx.Value(roleKey{}).(Role); ok {
		return r
	}
	return RoleNone
}

// authenticate answers 401 or 429 itself and returns false, or returns the
// request carrying its role.
func (a *Auth) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	lim := a.limiter(host)
	if lim.Tokens() < 1 {
		retry := max(1, int(a.failureEvery.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		writeErr(w, http.StatusTooManyRequests, errors.New("too many failed authentication attempts from this address: wait and retry"))
		return r, false
	}
	tok, found := "", false
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, rest, _ := strings.Cut(v, " ")
		if strings.EqualFold(scheme, "Bearer") {
			tok = strings.TrimSpace(rest)
		}
	}
	var t Token
	if tok != "" {
		t, found = a.match(tok)
	}
	if !found {
		lim.Allow() // spend one failure
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
		msg := "a bearer token is required (Authorization: Bearer <token>; the CLI takes --token or SLUICE_TOKEN)"
		if tok != "" {
			msg = "the token is not valid"
		}
		writeErr(w, http.StatusUnauthorized, errors.New(msg))
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), roleKey{}, t.Role)), true
}

// need wraps h so that it runs only for role or higher.
func (s *server) need(role Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Auth != nil {
			if got := RoleOf(r.Context()); got < role {
				writeErr(w, http.StatusForbidden, fmt.Errorf("this needs the %s role; the token's role is %s", role, got))
				return
			}
		}
		h(w, r)
	}
}

// WhoAmI is GET /v1/whoami: the role of the caller's token.
type WhoAmI struct {
	// Role is viewer, publisher or admin; admin when the API has no tokens.
	Role string `json:"role"`
	// Auth reports whether the API requires tokens.
	Auth bool `json:"auth"`
}

func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Auth == nil {
		writeJSON(w, http.StatusOK, WhoAmI{Role: RoleAdmin.String(), Auth: false})
		return
	}
	writeJSON(w, http.StatusOK, WhoAmI{Role: RoleOf(r.Context()).String(), Auth: true})
}
