package handlers_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sluicehq/sluice/handlers"
)

func newSecret(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(k)
}

// received is one request as the endpoint saw it.
type received struct {
	header http.Header
	body   []byte
}

func recorder(t *testing.T) (*httptest.Server, func() []received) {
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{r.Header.Clone(), b})
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received { mu.Lock(); defer mu.Unlock(); return append([]received(nil), got...) }
}

// verify checks a request with the Standard Webhooks reference library,
// timestamp tolerance included.
func verify(t *testing.T, secret string, r received) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	return wh.Verify(r.body, r.header)
}

func TestSignedRequestsVerifyWithTheReferenceLibrary(t *testing.T) {
	secret := newSecret(t)
	t.Setenv("SLUICE_TEST_SIGNING", secret)
	srv, got := recorder(t)
	spec := &handlers.HTTPSpec{URL: srv.URL, Headers: map[string]string{"Webhook-Signature": "forged"},
		Signing: &handlers.SigningSpec{SecretRef: "env:SLUICE_TEST_SIGNING"}}
	inv := handlers.NewHTTPInvoker(spec, 2)
	defer inv.Close()
	m := &handlers.Message{Topic: "orders", Partition: 3, Offset: 42, Value: []byte(`{"total":12}`), Attempt: 1,
		Headers: []handlers.Header{{Key: "webhook-id", Value: []byte("producer-forged")}}}
	if err := inv.Invoke(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	// A batch is signed over its JSON body, with its ce-id.
	if err := inv.InvokeBatch(context.Background(), []*handlers.Message{m, {Topic: "orders", Partition: 3, Offset: 43, Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	reqs := got()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if err := verify(t, secret, r); err != nil {
			t.Errorf("request %d: the reference library rejects it: %v (headers %v)", i, err, r.header)
		}
		if id, ce := r.header.Get("Webhook-Id"), r.header.Get("Ce-Id"); id != ce || id == "" {
			t.Errorf("request %d: webhook-id %q, want the ce-id %q", i, id, ce)
		}
		if n := len(strings.Fields(r.header.Get("Webhook-Signature"))); n != 1 {
			t.Errorf("request %d: %d signatures, want 1", i, n)
		}
	}
	if id := reqs[0].header.Get("Webhook-Id"); id != "orders/3/42" {
		t.Errorf("webhook-id %q, want orders/3/42", id)
	}
	// A changed body, or another secret, does not verify.
	tampered := received{reqs[0].header, []byte(`{"total":13}`)}
	if err := verify(t, secret, tampered); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("a tampered body verified: %v", err)
	}
	if err := verify(t, newSecret(t), reqs[0]); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("another secret verified: %v", err)
	}
}

// TestSigningSecretRotation rotates a file secret without a restart: during
// the window both the old and the new secret verify; after it, only the new.
func TestSigningSecretRotation(t *testing.T) {
	oldS, newS := newSecret(t), newSecret(t)
	path := filepath.Join(t.TempDir(), "secret")
	write := func(v string) {
		t.Helper()
		// A later modification time than the last write, so the change is seen
		// however coarse the file system's clock.
		if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(oldS)
	srv, got := recorder(t)
	inv := handlers.NewHTTPInvoker(&handlers.HTTPSpec{URL: srv.URL, Signing: &handlers.SigningSpec{SecretRef: "file:" + path}}, 2)
	defer inv.Close()
	send := func(offset int64) received {
		t.Helper()
		if err := inv.Invoke(context.Background(), &handlers.Message{Topic: "t", Offset: offset, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		r := got()
		return r[len(r)-1]
	}
	r := send(1)
	if verify(t, oldS, r) != nil || verify(t, newS, r) == nil {
		t.Fatal("before the rotation, only the old secret should verify")
	}
	// The rotation window: both secrets, new first.
	write(newS + " " + oldS)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r = send(2)
		if len(strings.Fields(r.header.Get("Webhook-Signature"))) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rewritten secret file was not picked up within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := verify(t, oldS, r); err != nil {
		t.Errorf("during the window, the old secret: %v", err)
	}
	if err := verify(t, newS, r); err != nil {
		t.Errorf("during the window, the new secret: %v", err)
	}
	write(newS)
	deadline = time.Now().Add(30 * time.Second)
	for {
		r = send(3)
		if len(strings.Fields(r.header.Get("Webhook-Signature"))) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the secret file after the window was not picked up within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if verify(t, newS, r) != nil || verify(t, oldS, r) == nil {
		t.Error("after the window, only the new secret should verify")
	}
}

func TestSigningSecretProblemsAreRetryableAndNeverQuoted(t *testing.T) {
	srv, got := recorder(t)
	t.Setenv("SLUICE_TEST_BAD_SECRET", "whsec_not-base64!!")
	for _, c := range []struct{ ref, want string }{
		{"env:SLUICE_TEST_UNSET_SECRET_XYZ", "signing secret env:SLUICE_TEST_UNSET_SECRET_XYZ: the variable is not set on this node"},
		{"env:SLUICE_TEST_BAD_SECRET", "signing secret env:SLUICE_TEST_BAD_SECRET: secret 1: the part after whsec_ is not standard base64"},
		{"file:" + filepath.Join(t.TempDir(), "missing"), "no such file or directory"},
	} {
		inv := handlers.NewHTTPInvoker(&handlers.HTTPSpec{URL: srv.URL, Signing: &handlers.SigningSpec{SecretRef: c.ref}}, 1)
		err := inv.Invoke(context.Background(), &handlers.Message{Topic: "t", Value: []byte("v")})
		if err == nil || !strings.Contains(err.Error(), c.want) || handlers.IsPermanent(err) {
			t.Errorf("%s: got %v, want a retryable error containing %q", c.ref, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "not-base64") {
			t.Errorf("%s: the error quotes the secret: %v", c.ref, err)
		}
		if cerr := inv.CheckSigning(); cerr == nil {
			t.Errorf("%s: CheckSigning found nothing wrong", c.ref)
		}
		inv.Close()
	}
	if n := len(got()); n != 0 {
		t.Fatalf("%d unsigned requests were sent", n)
	}
}

func TestSigningSpecValidation(t *testing.T) {
	for ref, want := range map[string]string{
		"":                  "http.signing.secretRef: is required: env:NAME or file:PATH",
		"whsec_abc":         `http.signing.secretRef: "whsec_abc": want env:NAME or file:PATH`,
		"env:1BAD":          `http.signing.secretRef: "env:1BAD": env: wants a variable name`,
		"file:":             "http.signing.secretRef: file: wants a path",
		"env:ORDERS_SECRET": "",
	} {
		spec := handlers.Spec{Name: "x", Topic: "t", HTTP: &handlers.HTTPSpec{URL: "http://h/", Signing: &handlers.SigningSpec{SecretRef: ref}}}
		spec.Normalize()
		err := spec.Validate()
		if want == "" && err != nil || want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)) {
			t.Errorf("secretRef %q: got %v, want %q", ref, err, want)
		}
	}
	// Strict parsing knows the new fields and refuses unknown ones.
	if _, err := handlers.ParseOne([]byte("name: x\ntopic: t\nhttp:\n  url: http://h/\n  signing:\n    secret: whsec_x\n")); err == nil ||
		!strings.Contains(err.Error(), "http.signing.secret: unknown field") {
		t.Errorf("an unknown signing field: %v", err)
	}
}
