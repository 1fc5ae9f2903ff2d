package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sluicehq/sluice/internal/testkit"
)

// TestSignedWebhooksVerifyWithTheReferenceLibrary runs the real binary with
// a signing secret in its environment; the endpoint checks every request
// with the Standard Webhooks reference library and refuses those that fail.
func TestSignedWebhooksVerifyWithTheReferenceLibrary(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	verified, rejected := map[string]int{}, 0
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := wh.Verify(b, r.Header); err != nil || r.Header.Get("Webhook-Id") != r.Header.Get("Ce-Id") {
			rejected++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		verified[string(b)]++
	}))
	t.Cleanup(ep.Close)

	o := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t),
		env: []string{"SLUICE_E2E_WEBHOOK_SECRET=" + secret}}
	serve(t, o)
	spec := handlerSpec("signed", "signed-topic", ep.URL, 8) + "  signing:\n    secretRef: env:SLUICE_E2E_WEBHOOK_SECRET\n"
	cli(t, o.httpAddr, spec, "handler", "apply", "-f", "-")
	// The registry holds the reference, never the secret.
	if out := cli(t, o.httpAddr, "", "handler", "get", "signed", "-o", "json"); strings.Contains(out, secret) ||
		!strings.Contains(out, "env:SLUICE_E2E_WEBHOOK_SECRET") {
		t.Fatalf("handler get shows %s", out)
	}
	const n = 500
	cli(t, o.httpAddr, lines("signed-", 0, n, false), "publish", "signed-topic")
	testkit.Eventually(t, 60*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(verified) == n },
		"%d messages verified by the reference library", n)
	mu.Lock()
	defer mu.Unlock()
	if rejected != 0 {
		t.Fatalf("%d requests failed verification", rejected)
	}
	fmt.Printf("signed webhooks: %d of %d requests verified by the Standard Webhooks reference library, 0 rejected\n", len(verified), n)
}
