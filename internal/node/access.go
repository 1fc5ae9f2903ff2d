package node

import (
	"crypto/tls"
	"encoding/hex"
	"fmt"

	"github.com/sluicehq/sluice/api"
)

// access is what New prepares from the API's security settings: the
// tokens (hashed) and the listener's TLS.
type access struct {
	auth *api.Auth // nil: the API is open
	tls  *tls.Config
}

// loadAccess reads api.tokensFile and api.tls, and refuses an open API on
// an address other hosts can reach unless Insecure says so.
func loadAccess(cfg Config) (access, error) {
	var a access
	tokens := append([]Token(nil), cfg.API.Tokens...)
	if cfg.API.TokensFile != "" {
		more, err := LoadTokensFile(cfg.API.TokensFile)
		if err != nil {
			return a, err
		}
		tokens = append(tokens, more...)
	}
	names := map[string]bool{}
	var hashed []api.Token
	for _, t := range tokens {
		if names[t.Name] {
			return a, fmt.Errorf("api.tokens: the name %q is used twice (in api.tokens and api.tokensFile)", t.Name)
		}
		names[t.Name] = true
		role, _ := api.ParseRole(t.Role) // validated
		h := api.Token{Name: t.Name, Role: role}
		if t.Token != "" {
			h.SHA256 = api.HashToken(t.Token)
		} else {
			b, _ := hex.DecodeString(t.TokenSHA256) // validated
			copy(h.SHA256[:], b)
		}
		hashed = append(hashed, h)
	}
	if len(hashed) > 0 {
		a.auth, _ = api.NewAuth(hashed)
	} else if !isLoopback(cfg.HTTPAddr) && !cfg.Insecure {
		return a, fmt.Errorf("httpAddr: %s is not a loopback address and the API has no tokens: set api.tokens or api.tokensFile, or pass --insecure to serve it open", cfg.HTTPAddr)
	}
	if cfg.API.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.API.TLS.CertFile, cfg.API.TLS.KeyFile)
		if err != nil {
			return a, fmt.Errorf("api.tls: %w", err)
		}
		a.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return a, nil
}
