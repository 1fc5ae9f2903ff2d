package handlers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Standard Webhooks request headers, set when a handler has a signing
// secret (https://www.standardwebhooks.com).
const (
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
)

// SigningSpec signs an HTTP handler's requests the Standard Webhooks way.
type SigningSpec struct {
	// SecretRef says where each node reads the secret: env:NAME (an
	// environment variable of the node) or file:PATH (a file on the node,
	// re-read when it changes). The secret itself never enters the
	// registry. Its value is one or more whitespace-separated secrets of
	// the form whsec_<base64 key>; every request carries one signature per
	// secret, which is how a secret is rotated: add the new one, let the
	// endpoints switch, remove the old one.
	SecretRef string `json:"secretRef"`
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (s *SigningSpec) validate() error {
	ref := s.SecretRef
	switch {
	case ref == "":
		return &FieldError{Field: "http.signing.secretRef", Msg: "is required: env:NAME or file:PATH"}
	case strings.HasPrefix(ref, "env:"):
		if !envNameRE.MatchString(ref[4:]) {
			return &FieldError{Field: "http.signing.secretRef", Msg: fmt.Sprintf("%q: env: wants a variable name such as env:ORDERS_WEBHOOK_SECRET", ref)}
		}
	case strings.HasPrefix(ref, "file:"):
		if strings.TrimSpace(ref[5:]) == "" {
			return &FieldError{Field: "http.signing.secretRef", Msg: "file: wants a path such as file:/etc/sluice/orders.secret"}
		}
	default:
		return &FieldError{Field: "http.signing.secretRef", Msg: fmt.Sprintf("%q: want env:NAME or file:PATH", ref)}
	}
	return nil
}

// ParseWebhookSecrets reads one or more whitespace-separated secrets of the
// form whsec_<base64 key> and returns their keys. Errors never quote the
// secret.
func ParseWebhookSecrets(v string) ([][]byte, error) {
	var keys [][]byte
	for i, f := range strings.Fields(v) {
		if !strings.HasPrefix(f, "whsec_") {
			return nil, fmt.Errorf("secret %d does not start with whsec_", i+1)
		}
		k, err := base64.StdEncoding.DecodeString(f[len("whsec_"):])
		if err != nil {
			return nil, fmt.Errorf("secret %d: the part after whsec_ is not standard base64", i+1)
		}
		if len(k) < 16 {
			return nil, fmt.Errorf("secret %d: the key is %d bytes, want at least 16", i+1, len(k))
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("the value is empty")
	}
	return keys, nil
}

// signer computes webhook-signature headers with the keys behind a
// secretRef. A file is re-read when its modification time or size changes
// (checked at most once a second), so a rotation needs no restart; an
// environment variable is read once.
type signer struct {
	ref string
	now func() time.Time

	mu      sync.Mutex
	keys    [][]byte
	err     error
	checked time.Time
	stamp   string // the file's size and modification time when read
}

func newSigner(ref string) *signer {
	s := &signer{ref: ref, now: time.Now}
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		v, set := os.LookupEnv(name)
		if !set {
			s.err = fmt.Errorf("signing secret %s: the variable is not set on this node", ref)
		} else if s.keys, s.err = ParseWebhookSecrets(v); s.err != nil {
			s.err = fmt.Errorf("signing secret %s: %w", ref, s.err)
		}
	}
	return s
}

func (s *signer) load() ([][]byte, error) {
	path, isFile := strings.CutPrefix(s.ref, "file:")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !isFile {
		return s.keys, s.err
	}
	now := s.now()
	if !s.checked.IsZero() && now.Sub(s.checked) < time.Second {
		return s.keys, s.err
	}
	s.checked = now
	fi, err := os.Stat(path)
	if err != nil {
		s.keys, s.err, s.stamp = nil, fmt.Errorf("signing secret %s: %w", s.ref, errors.Unwrap(err)), ""
		return nil, s.err
	}
	stamp := strconv.FormatInt(fi.Size(), 10) + "@" + fi.ModTime().String()
	if stamp == s.stamp {
		return s.keys, s.err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		s.keys, s.err = nil, fmt.Errorf("signing secret %s: %w", s.ref, errors.Unwrap(err))
	} else if s.keys, s.err = ParseWebhookSecrets(string(b)); s.err != nil {
		s.err = fmt.Errorf("signing secret %s: %w", s.ref, s.err)
	}
	s.stamp = stamp
	return s.keys, s.err
}

// sign sets the Standard Webhooks headers on h for a request with id and
// body: webhook-signature is "v1,<base64 HMAC-SHA256 of id.timestamp.body>"
// for each key, separated by spaces.
func (s *signer) sign(h http.Header, id string, body []byte) error {
	keys, err := s.load()
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(s.now().Unix(), 10)
	sigs := make([]string, len(keys))
	for i, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	h[HeaderWebhookID] = []string{id}
	h[HeaderWebhookTimestamp] = []string{ts}
	h[HeaderWebhookSignature] = []string{strings.Join(sigs, " ")}
	return nil
}
