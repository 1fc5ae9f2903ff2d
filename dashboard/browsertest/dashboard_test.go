package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dashboard"
	"github.com/sluicehq/sluice/dlq"
	"github.com/sluicehq/sluice/internal/testkit"
)

// chromium is Debian's Chromium; CI installs it with apt-get install chromium.
const chromium = "/usr/bin/chromium"

// TestDashboardInBrowser drives the dashboard of a real in-process node in
// headless Chromium: live numbers on the overview, pause and resume from
// the handler page, replay from the dead-letter page through the in-page
// confirmation dialog, publishing from the topics page, screenshots of
// every page at desktop and phone widths, and the banner shown when the
// node goes away.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the dashboard test needs Chromium at %s (apt-get install chromium): %v", chromium, err)
	}
	n := startNode(t)
	orders := newEndpoint(t)
	payments := newEndpoint(t)
	payments.fail.Store(true) // 400: permanent, dead-lettered at once
	// The handler's header value and URL password are write-only: the
	// dashboard shows (set).
	ordersURL := strings.Replace(orders.URL, "http://", "http://ops:dash-hunter2@", 1)
	n.apply(t, fmt.Sprintf(`{"name":"orders","topic":"orders","http":{"url":%q,"headers":{"Authorization":"Bearer dash-s3cret"}},"concurrency":8}`, ordersURL))
	n.apply(t, fmt.Sprintf(`{"name":"payments","topic":"payments","http":{"url":%q}}`, payments.URL))

	b := startBrowser(t, n.base)

	var published int
	t.Run("overview shows live numbers", func(t *testing.T) {
		pub := startPublisher(t, n, "orders", 10*time.Second)
		b.open(t, "/")
		b.waitFor(t, 20*time.Second, `document.querySelector('[data-testid="handler-row-orders"]') !== null`, "the orders row")
		b.waitFor(t, 20*time.Second, b.numAbove("succeeded-orders", 0), "succeeded > 0 on the overview")
		first := b.num(t, "succeeded-orders")
		b.waitFor(t, 20*time.Second, b.numAbove("succeeded-orders", first), "succeeded to grow past %v without a reload", first)
		b.waitFor(t, 20*time.Second, b.numAbove("rate-in-orders", 0), "a rate in above 0")
		b.waitFor(t, 20*time.Second, b.numAbove("rate-out-orders", 0), "a rate out above 0")
		if got := b.attr(t, "state-orders", "data-state"); got != "running" {
			t.Fatalf("orders state %q, want running", got)
		}
		published = pub.stop()
		if published == 0 {
			t.Fatal("the publisher published nothing")
		}
		// Exactly what was published, once each, and the page says so.
		testkit.Eventually(t, 20*time.Second, func() bool { return orders.total() == published }, "%d deliveries", published)
		b.waitFor(t, 20*time.Second, b.numIs("succeeded-orders", float64(published)), "succeeded = %d on the overview", published)
		if d := orders.distinct(); d != published {
			t.Fatalf("endpoint saw %d distinct messages in %d deliveries, want %d", d, orders.total(), published)
		}
	})

	t.Run("pause and resume from the handler page", func(t *testing.T) {
		b.click(t, "handler-link-orders") // client-side navigation
		b.waitFor(t, 10*time.Second, `location.pathname === "/handlers/orders" && document.querySelector("main").dataset.loaded === "handler"`, "the handler page")
		b.waitFor(t, 10*time.Second, `document.querySelector('[data-testid="handler-spec"]').textContent.includes('"url"')`, "the spec")
		spec := b.text(t, "handler-spec")
		if !strings.Contains(spec, `"Authorization": "(set)"`) || !strings.Contains(spec, "ops:(set)@") ||
			strings.Contains(spec, "dash-s3cret") || strings.Contains(spec, "dash-hunter2") {
			t.Fatalf("the handler page shows the spec's secrets, or not (set):\n%s", spec)
		}
		b.waitFor(t, 10*time.Second, `!document.querySelector('[data-testid="pause-button"]').disabled`, "an enabled Pause button")
		b.click(t, "pause-button")
		b.waitFor(t, 10*time.Second, b.stateIs("handler-state", "paused"), "the handler page to show paused")

		b.click(t, "nav-handlers")
		b.waitFor(t, 10*time.Second, b.stateIs("state-orders", "paused"), "the overview to show orders paused")
		if txt := b.text(t, "state-orders"); txt != "paused" {
			t.Fatalf("state badge text %q, want paused", txt)
		}
		// While paused, published messages wait: the overview shows the lag
		// and the endpoint gets nothing.
		n.publish(t, "orders", "paused-", 10)
		b.waitFor(t, 20*time.Second, b.numIs("lag-orders", 10), "lag 10 on the overview")
		b.click(t, "handler-link-orders")
		b.waitFor(t, 20*time.Second, `(() => {
			const cells = [...document.querySelectorAll('[data-testid^="partition-lag-orders-"]')];
			return cells.length > 0 && cells.reduce((a, c) => a + Number(c.dataset.value), 0) === 10;
		})()`, "partition lags summing to 10")
		if got := orders.total(); got != published {
			t.Fatalf("a paused handler delivered: %d deliveries, want %d", got, published)
		}

		b.click(t, "resume-button")
		b.waitFor(t, 10*time.Second, b.stateIs("handler-state", "running"), "the handler page to show running")
		testkit.Eventually(t, 20*time.Second, func() bool { return orders.total() == published+10 }, "%d deliveries after resume", published+10)
		b.waitFor(t, 20*time.Second, `[...document.querySelectorAll('[data-testid^="partition-lag-orders-"]')].every(c => c.dataset.value === "0")`, "no lag after resume")
		published += 10
		if d := orders.distinct(); d != published || orders.total() != published {
			t.Fatalf("endpoint saw %d distinct in %d deliveries, want %d once each", d, orders.total(), published)
		}
	})

	var entryID string
	t.Run("replay a dead letter from its page", func(t *testing.T) {
		n.publish(t, "payments", "pay-", 2)
		testkit.Eventually(t, 20*time.Second, func() bool { return n.dlqPage(t, "payments").Total == 2 }, "two dead letters")
		// Replay the entry of pay-0 alone; pay-1 stays dead.
		var otherID string
		for _, e := range n.dlqPage(t, "payments").Entries {
			if v := n.dlqValue(t, "payments", e.ID); v == "pay-0" {
				entryID = e.ID
			} else {
				otherID = e.ID
			}
		}
		if entryID == "" || otherID == "" {
			t.Fatalf("no entries for pay-0 and pay-1")
		}

		b.click(t, "nav-handlers")
		b.waitFor(t, 20*time.Second, b.numIs("dead-payments", 2), "2 dead-lettered on the overview")
		b.click(t, "dead-payments")
		b.waitFor(t, 10*time.Second, `location.pathname === "/handlers/payments/dlq"`, "the dead-letter page")
		b.waitFor(t, 10*time.Second, b.stateIs("dlq-state-"+entryID, "dead")+" && "+b.stateIs("dlq-state-"+otherID, "dead"), "both entries listed as dead")

		// The entry's payload and headers.
		b.click(t, "open-"+entryID)
		b.waitFor(t, 10*time.Second, `document.querySelector('[data-testid="entry-payload"]')?.textContent === "pay-0"`, "the payload pay-0")
		if hs := b.text(t, "entry-headers"); !strings.Contains(hs, "origin") || !strings.Contains(hs, "dashboard-test") {
			t.Fatalf("entry headers %q, want origin = dashboard-test", hs)
		}
		b.click(t, "entry-close")
		b.waitFor(t, 5*time.Second, `!document.getElementById("entry").open`, "the entry dialog to close")

		payments.fail.Store(false)
		// Cancelling the dialog replays nothing (checked below).
		b.click(t, "replay-"+otherID)
		b.waitFor(t, 5*time.Second, `document.getElementById("confirm").open`, "the confirmation dialog")
		b.click(t, "confirm-cancel")
		b.waitFor(t, 5*time.Second, `!document.getElementById("confirm").open`, "the dialog to close")

		b.click(t, "replay-"+entryID)
		b.waitFor(t, 5*time.Second, `document.getElementById("confirm").open`, "the confirmation dialog")
		if got := b.text(t, "confirm-ok"); got != "Replay" {
			t.Fatalf("confirm button %q, want Replay", got)
		}
		if got, want := b.textOf(t, "#confirm-title"), "Replay entry "+entryID+"?"; got != want {
			t.Fatalf("dialog title %q, want %q", got, want)
		}
		b.click(t, "confirm-ok")
		testkit.Eventually(t, 20*time.Second, func() bool { return payments.okCount("pay-0") == 1 }, "the replayed message delivered")
		b.waitFor(t, 10*time.Second, b.stateIs("dlq-state-"+entryID, "replayed"), "entry %s shown as replayed", entryID)
		if got := b.text(t, "toast"); !strings.Contains(got, "Replayed 1 entry of payments") {
			t.Fatalf("toast %q", got)
		}
		if a := payments.attempts("pay-0"); a != 2 {
			t.Fatalf("endpoint got pay-0 %d times, want 2 (the failure, then the replay)", a)
		}
		if a := payments.attempts("pay-1"); a != 1 {
			t.Fatalf("endpoint got pay-1 %d times, want 1: it was not replayed", a)
		}
		if got := b.attr(t, "dlq-state-"+otherID, "data-state"); got != "dead" {
			t.Fatalf("entry %s (pay-1) is %q on the page, want dead", otherID, got)
		}
		states := map[string]string{}
		for _, e := range n.dlqPage(t, "payments").Entries {
			states[e.ID] = e.State
		}
		if want := map[string]string{entryID: dlq.StateReplayed, otherID: dlq.StateDead}; !maps.Equal(states, want) {
			t.Fatalf("entry states %v, want %v", states, want)
		}

		// Replaying all runs as a job in the node; the page follows it.
		b.click(t, "replay-all")
		b.waitFor(t, 5*time.Second, `document.getElementById("confirm").open`, "the confirmation dialog")
		b.click(t, "confirm-ok")
		testkit.Eventually(t, 20*time.Second, func() bool { return payments.okCount("pay-1") == 1 }, "the other message replayed")
		b.waitFor(t, 20*time.Second, `document.querySelector('[data-testid="toast"]')?.textContent.includes("Replayed 1 entry of payments")`, "the job's outcome in the toast")
		b.waitFor(t, 10*time.Second, b.stateIs("dlq-state-"+otherID, "replayed"), "entry %s shown as replayed", otherID)
		if a := payments.attempts("pay-0"); a != 2 {
			t.Fatalf("endpoint got pay-0 %d times, want 2: replay all took a replayed entry", a)
		}

		// A deleted handler's dead letters: the page opens on the topic it
		// left, and can discard them.
		refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) }))
		defer refuse.Close()
		n.apply(t, fmt.Sprintf(`{"name":"ledger","topic":"ledger","http":{"url":%q},"deadLetter":{"topic":"ledger-graveyard"}}`, refuse.URL))
		n.publish(t, "ledger", "led-", 1)
		testkit.Eventually(t, 30*time.Second, func() bool { return n.dlqPage(t, "ledger").Total == 1 }, "one dead letter of ledger")
		ledgerID := n.dlqPage(t, "ledger").Entries[0].ID
		if code, body, err := n.do("DELETE", "/v1/handlers/ledger", ""); err != nil || code != http.StatusNoContent {
			t.Fatalf("deleting ledger: %d %s %v", code, body, err)
		}
		b.open(t, "/handlers/ledger/dlq")
		b.waitFor(t, 15*time.Second, b.stateIs("dlq-state-"+ledgerID, "dead"), "the deleted handler's entry listed")
		b.waitFor(t, 5*time.Second, `document.querySelector('[data-testid="dlq-topic"]')?.hidden === false`, "the topic selector shown")
		if v := b.textOf(t, `[data-testid="dlq-topic"] option:checked`); !strings.HasPrefix(v, "ledger-graveyard") {
			t.Fatalf("the topic selected is %q, want ledger-graveyard", v)
		}
		b.click(t, "discard-"+ledgerID)
		b.waitFor(t, 5*time.Second, `document.getElementById("confirm").open`, "the confirmation dialog")
		b.click(t, "confirm-ok")
		b.waitFor(t, 10*time.Second, b.stateIs("dlq-state-"+ledgerID, "discarded"), "the deleted handler's entry discarded")
	})

	t.Run("publish from the topics page", func(t *testing.T) {
		b.click(t, "nav-topics")
		b.waitFor(t, 10*time.Second, `document.querySelector('[data-testid="topic-messages-orders"]')?.dataset.value === "`+strconv.Itoa(published)+`"`, "orders with %d messages", published)
		b.fill(t, "publish-topic", "orders")
		b.fill(t, "publish-key", "form-key")
		b.fill(t, "publish-value", "from-the-form")
		b.fill(t, "publish-headers", "trace=abc123\nteam=growth")
		b.click(t, "publish-submit")
		b.waitFor(t, 10*time.Second, `document.querySelector('[data-testid="publish-offset-result"]') !== null`, "the publish result")
		part, off := b.text(t, "publish-partition-result"), b.text(t, "publish-offset-result")
		testkit.Eventually(t, 20*time.Second, func() bool { return orders.attempts("from-the-form") == 1 }, "the form's message delivered")
		h := orders.header("from-the-form")
		if got, want := h.Get("Ce-Id"), "orders/"+part+"/"+off; got != want {
			t.Fatalf("delivered Ce-Id %q, the page said %q", got, want)
		}
		if h.Get("Sluice-Key") != "form-key" || h.Get("Trace") != "abc123" || h.Get("Team") != "growth" {
			t.Fatalf("delivered headers %v", h)
		}
		published++
	})

	t.Run("the fleet page shows nodes and what the handlers need", func(t *testing.T) {
		b.click(t, "nav-fleet")
		b.waitFor(t, 20*time.Second, `document.querySelector('[data-testid="fleet-group-orders"]') !== null`, "the orders group on the fleet page")
		b.waitFor(t, 20*time.Second, b.numIs("fleet-nodes", 1), "one live node")
		// Nothing waits or arrives now: each handler needs its minNodes (1).
		b.waitFor(t, 30*time.Second, b.numIs("fleet-desired-orders", 1), "orders to need 1 node")
		b.waitFor(t, 30*time.Second, `document.querySelector('[data-testid="fleet-reason-orders"]').textContent.includes("nothing waiting")`, "the reason in words")
		b.waitFor(t, 30*time.Second, b.numIs("fleet-desired", 1), "the fleet to need 1 node")
		b.waitFor(t, 30*time.Second, `Number(document.querySelector('[data-testid="fleet-charts"]').dataset.points) > 0`, "the desired-against-live chart to have points")
		var f api.Fleet
		if err := json.Unmarshal([]byte(get(t, n.base+"/v1/fleet")), &f); err != nil {
			t.Fatal(err)
		}
		if f.DesiredNodes != 1 || len(f.Nodes) != 1 {
			t.Fatalf("GET /v1/fleet: desired %d, %d nodes; the page showed 1 and 1", f.DesiredNodes, len(f.Nodes))
		}
	})

	t.Run("screenshots", func(t *testing.T) {
		if entryID == "" {
			t.Fatal("no dead-letter entry from the earlier step")
		}
		dir := artifactsDir(t)
		pages := []struct{ name, path, ready string }{
			{"overview", "/", `document.querySelector('[data-testid="handler-row-payments"]') !== null`},
			{"handler", "/handlers/orders", `Number(document.querySelector('[data-testid="charts"]').dataset.points) > 0 &&
				document.querySelector('[data-testid^="partition-lag-orders-"]') !== null &&
				document.querySelector('[data-testid="handler-state"]').dataset.state === "running"`},
			{"dlq", "/handlers/payments/dlq", `document.querySelector('[data-testid="dlq-row-` + entryID + `"]') !== null`},
			{"topics", "/topics", `document.querySelector('[data-testid="topic-row-payments"]') !== null`},
			{"fleet", "/fleet", `Number(document.querySelector('[data-testid="fleet-charts"]').dataset.points) > 0`},
		}
		for _, w := range []int64{1280, 390} {
			b.viewport(t, w)
			for _, pg := range pages {
				b.open(t, pg.path) // a deep link: the server answers with the app
				b.waitFor(t, 15*time.Second, pg.ready, "%s page ready at %d px", pg.name, w)
				b.shot(t, filepath.Join(dir, fmt.Sprintf("%s-%d.png", pg.name, w)))
			}
			b.open(t, "/handlers/payments/dlq")
			b.click(t, "open-"+entryID)
			b.waitFor(t, 10*time.Second, `document.querySelector('[data-testid="entry-payload"]') !== null`, "the entry dialog")
			b.shot(t, filepath.Join(dir, fmt.Sprintf("dlq-entry-%d.png", w)))
		}
		t.Logf("screenshots in %s", dir)
	})

	// Until here no request failed and no script threw.
	b.checkNoPageErrors(t)

	t.Run("a group that re-forms shows rejoining and for how long", func(t *testing.T) {
		// A member that will fall silent (kafka-go's own consumer group,
		// whose generation never ends) joins the handler's group; then a
		// second node joins, and the rebalance waits for the silent member
		// until its 12s session ends. Meanwhile this node's handler is
		// rejoining, and the overview says so, with the time.
		reform := newEndpoint(t)
		n.apply(t, fmt.Sprintf(`{"name":"reform","topic":"reform","http":{"url":%q}}`, reform.URL))
		b.viewport(t, 1280)
		b.open(t, "/")
		b.waitFor(t, 30*time.Second, b.stateIs("state-reform", "running"), "reform running")
		release := testkit.SilentMember(t, n.brokers, "sluice.reform", "reform", 12*time.Second)
		defer release()
		// The silent member is in the group once it owns partitions.
		testkit.Eventually(t, 30*time.Second, func() bool {
			_, body, err := n.do("GET", "/v1/fleet", "")
			var f api.Fleet
			if err != nil || json.Unmarshal(body, &f) != nil {
				return false
			}
			for _, fn := range f.Nodes {
				for _, h := range fn.Handlers {
					if h.Name == "reform" && strings.Contains(fn.ID, "kafka-go") && len(h.Partitions) > 0 {
						return true
					}
				}
			}
			return false
		}, "the member that will fall silent to own partitions of reform")
		b.waitFor(t, 30*time.Second, b.stateIs("state-reform", "running"), "reform running beside it")
		startNode(t, sluice.WithBrokers(n.brokers...))
		b.waitFor(t, 20*time.Second, b.stateIs("state-reform", "rejoining"), "the overview to show reform rejoining")
		b.waitFor(t, 10*time.Second, `/^rejoining · [0-9]+s$/.test(document.querySelector('[data-testid="state-reform"]').textContent.trim())`,
			"the rejoining badge to say for how long")
		b.shot(t, filepath.Join(artifactsDir(t), "rejoining-1280.png"))
		b.waitFor(t, 60*time.Second, b.stateIs("state-reform", "running"), "reform running again once the silent member's session ended")
	})

	t.Run("an unreachable node is reported", func(t *testing.T) {
		b.viewport(t, 1280)
		b.open(t, "/")
		b.waitFor(t, 10*time.Second, `document.querySelector("main").dataset.loaded === "overview"`, "the overview")
		n.stop()
		b.waitFor(t, 15*time.Second, `(() => {
			const el = document.querySelector('[data-testid="error-banner"]');
			return !el.hidden && el.textContent.includes("Cannot reach the Sluice node at `+strings.TrimPrefix(n.base, "http://")+`");
		})()`, "the error banner")
		if got := b.attr(t, "live-status", "data-state"); got != "down" {
			t.Fatalf("live status %q, want down", got)
		}
		// The last numbers stay on the page.
		if got := b.num(t, "succeeded-orders"); math.IsNaN(got) {
			t.Fatal("the overview lost its rows when the node went away")
		}
		b.shot(t, filepath.Join(artifactsDir(t), "offline-1280.png"))
	})
}

func TestHandlerServesTheApp(t *testing.T) {
	srv := httptest.NewServer(dashboard.Handler())
	t.Cleanup(srv.Close)
	index := get(t, srv.URL+"/")
	tests := []struct {
		name, method, path string
		status             int
		contentType        string
		bodyHas            string
	}{
		{"index", "GET", "/", 200, "text/html; charset=utf-8", `<script type="module" src="/app.js">`},
		{"index by name", "GET", "/index.html", 200, "text/html; charset=utf-8", `<main id="main"`},
		{"deep link to a handler", "GET", "/handlers/orders", 200, "text/html; charset=utf-8", `<main id="main"`},
		{"deep link to dead letters", "GET", "/handlers/orders/dlq?state=dead", 200, "text/html; charset=utf-8", `<main id="main"`},
		{"deep link to topics", "GET", "/topics", 200, "text/html; charset=utf-8", `<main id="main"`},
		{"script", "GET", "/app.js", 200, "text/javascript; charset=utf-8", "import"},
		{"page module", "GET", "/pages/dlq.js", 200, "text/javascript; charset=utf-8", "export function dlqPage"},
		{"style", "GET", "/app.css", 200, "text/css; charset=utf-8", ":root"},
		{"icon", "GET", "/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"missing file", "GET", "/nope.js", 404, "text/plain; charset=utf-8", "not found"},
		{"unknown API route", "GET", "/v1/nothing", 404, "application/json", `"error": "no API route GET /v1/nothing"`},
		{"head", "HEAD", "/topics", 200, "text/html; charset=utf-8", ""},
		{"post", "POST", "/", 405, "text/plain; charset=utf-8", "method not allowed"},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Content-Type"); tc.contentType != "" && got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if !strings.Contains(string(body), tc.bodyHas) {
				t.Errorf("body does not contain %q:\n%.300s", tc.bodyHas, body)
			}
			if tc.status == 200 {
				if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
					t.Errorf("Cache-Control %q, want no-cache", got)
				}
				if resp.Header.Get("ETag") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("headers %v", resp.Header)
				}
			}
			if tc.method == "GET" && tc.status == 200 && strings.HasPrefix(tc.contentType, "text/html") && string(body) != index {
				t.Errorf("%s is not the app's index.html", tc.path)
			}
		})
	}

	t.Run("revalidation", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/app.js")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		etag := resp.Header.Get("ETag")
		req, _ := http.NewRequest("GET", srv.URL+"/app.js", nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match %s: status %d, want 304", etag, resp.StatusCode)
		}
	})

	t.Run("the index forbids other origins", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
			}
		}
	})
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// artifactsDir is $SLUICE_ARTIFACTS, else artifacts/dashboard at the root
// of the module (git-ignored).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SLUICE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts", "dashboard")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating the artifacts directory: %v", err)
	}
	return dir
}

// ---------------------------------------------------------------- node

type node struct {
	base    string
	brokers []string
	// token, when set, is sent as the bearer token of do.
	token string
	// stop stops the node and waits for it; safe to call twice.
	stop func()
}

func startNode(t *testing.T, opts ...sluice.Option) *node {
	t.Helper()
	app, err := sluice.New(append([]sluice.Option{sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger()),
		sluice.WithSampleInterval(500 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("node did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("node exited: %v", err)
	}
	n := &node{base: "http://" + app.HTTPAddr(), brokers: app.Brokers(), stop: stop}
	testkit.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get(n.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "node ready")
	return n
}

func (n *node) do(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, n.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" || method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	if n.token != "" {
		req.Header.Set("Authorization", "Bearer "+n.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (n *node) apply(t *testing.T, spec string) {
	t.Helper()
	var s struct{ Name string }
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		t.Fatalf("bad test spec: %v", err)
	}
	code, body, err := n.do("PUT", "/v1/handlers/"+s.Name, spec)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("applying %s: %d %s %v", s.Name, code, body, err)
	}
}

// publish publishes prefix0..prefix<count-1> with the header origin.
func (n *node) publish(t *testing.T, topic, prefix string, count int) {
	t.Helper()
	if err := n.publishBatch(topic, prefix, 0, count); err != nil {
		t.Fatal(err)
	}
}

func (n *node) publishBatch(topic, prefix string, from, count int) error {
	msgs := make([]string, count)
	for i := range msgs {
		msgs[i] = fmt.Sprintf(`{"key":"k%d","value":"%s%d","headers":{"origin":"dashboard-test"}}`, (from+i)%7, prefix, from+i)
	}
	code, body, err := n.do("POST", "/v1/topics/"+topic+"/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("publishing to %s: %d %s %v", topic, code, body, err)
	}
	return nil
}

func (n *node) dlqValue(t *testing.T, name, id string) string {
	t.Helper()
	code, body, err := n.do("GET", "/v1/handlers/"+name+"/dlq/"+id, "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("showing dead letter %s: %d %s %v", id, code, body, err)
	}
	var e dlq.Entry
	if err := json.Unmarshal(body, &e); err != nil || e.Value == nil {
		t.Fatalf("dead letter %s: %s %v", id, body, err)
	}
	return *e.Value
}

func (n *node) dlqPage(t *testing.T, name string) dlq.Page {
	t.Helper()
	code, body, err := n.do("GET", "/v1/handlers/"+name+"/dlq", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("listing dead letters: %d %s %v", code, body, err)
	}
	var p dlq.Page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("dead-letter page %s: %v", body, err)
	}
	return p
}

// publisher publishes batches to the node in the background until stopped
// or for at most limit.
type publisher struct {
	stopc chan struct{}
	done  chan struct{}
	sent  atomic.Int64
	once  sync.Once
}

func startPublisher(t *testing.T, n *node, topic string, limit time.Duration) *publisher {
	p := &publisher{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(limit)
		for {
			from := int(p.sent.Load())
			if err := n.publishBatch(topic, "o-", from, 20); err != nil {
				t.Errorf("background publisher: %v", err)
				return
			}
			p.sent.Add(20)
			select {
			case <-p.stopc:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop stops publishing and returns how many messages were published.
func (p *publisher) stop() int {
	p.once.Do(func() { close(p.stopc) })
	<-p.done
	return int(p.sent.Load())
}

// ---------------------------------------------------------------- endpoint

// endpoint is a handler's HTTP endpoint recording every request by body.
// While fail is set it answers 400, a permanent failure.
type endpoint struct {
	*httptest.Server
	fail     atomic.Bool
	mu       sync.Mutex
	attempt  map[string]int
	ok       map[string]int
	headers  map[string]http.Header
	requests int
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{attempt: map[string]int{}, ok: map[string]int{}, headers: map[string]http.Header{}}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body := string(b)
		fail := e.fail.Load()
		e.mu.Lock()
		e.requests++
		e.attempt[body]++
		e.headers[body] = r.Header.Clone()
		if !fail {
			e.ok[body]++
		}
		e.mu.Unlock()
		if fail {
			http.Error(w, "invalid payment: card declined", http.StatusBadRequest)
		}
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests
}

func (e *endpoint) distinct() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.attempt)
}

func (e *endpoint) attempts(body string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.attempt[body]
}

func (e *endpoint) okCount(body string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ok[body]
}

func (e *endpoint) header(body string) http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.headers[body]
}

// ---------------------------------------------------------------- browser

// browser is one headless Chromium tab on the node's dashboard. It records
// JavaScript exceptions and console errors, which fail the test.
type browser struct {
	ctx  context.Context
	base string

	mu         sync.Mutex
	pageErrors []string
}

func startBrowser(t *testing.T, base string) *browser {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{ctx: ctx, base: base}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel() // closes the browser, which ends the event loops
		cancelAlloc()
		wg.Wait()
	})
	// The first call starts the browser; it must not have a timeout.
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	console := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	logs := chromedp.Events(ctx, log.EntryAdded)
	wg.Add(3)
	go func() {
		defer wg.Done()
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			b.pageError(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range console {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.pageError("console." + string(ev.Type) + ": " + strings.Join(args, " "))
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range logs {
			if err != nil {
				return
			}
			// Errors such as a failed asset load or a CSP violation.
			if e := ev.Entry; e.Level == log.EntryLevelError {
				b.pageError(fmt.Sprintf("%s: %s %s", e.Source, e.Text, e.URL))
			}
		}
	}()
	b.viewport(t, 1280)
	return b
}

func (b *browser) pageError(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pageErrors = append(b.pageErrors, msg)
}

// checkNoPageErrors fails the test for every exception, console error or
// browser error (a failed request, a CSP violation) the pages caused. The
// test never makes the API fail, so a failed request is a bug too.
func (b *browser) checkNoPageErrors(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.pageErrors {
		t.Errorf("page error: %s", e)
	}
}

// run runs actions with a bound, failing the test on error.
func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) viewport(t *testing.T, width int64) {
	t.Helper()
	if width < 600 {
		b.run(t, "phone viewport", chromedp.EmulateViewport(width, 844, chromedp.EmulateMobile))
		return
	}
	b.run(t, "desktop viewport", chromedp.EmulateViewport(width, 900))
}

func (b *browser) open(t *testing.T, path string) {
	t.Helper()
	b.run(t, "opening "+path, chromedp.Navigate(b.base+path))
}

func sel(testid string) chromedp.CSS {
	return chromedp.CSS(`[data-testid="` + testid + `"]`)
}

// click clicks the element with the test id, with the mouse, once it is
// visible.
func (b *browser) click(t *testing.T, testid string) {
	t.Helper()
	b.run(t, "clicking "+testid, chromedp.ScrollIntoView(sel(testid), chromedp.NodeVisible), chromedp.Click(sel(testid), chromedp.NodeVisible))
}

// fill types value into the input with the test id, replacing its text.
func (b *browser) fill(t *testing.T, testid, value string) {
	t.Helper()
	b.run(t, "filling "+testid,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid="`+testid+`"]').value = ""`),
		chromedp.SendKeys(sel(testid), value))
}

func (b *browser) shot(t *testing.T, file string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", file, err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func evalJS[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// waitFor polls the JavaScript condition until it is true.
func (b *browser) waitFor(t *testing.T, timeout time.Duration, cond, msg string, args ...any) {
	t.Helper()
	last := &lastErr{}
	testkit.Eventually(t, timeout, func() bool {
		ok, err := evalJS[bool](b, cond)
		last.err = err
		return err == nil && ok
	}, "%s (on %s; last evaluation error: %v)", fmt.Sprintf(msg, args...), b.location(), last)
}

// lastErr prints the error it holds when the message is formatted.
type lastErr struct{ err error }

func (l *lastErr) String() string { return fmt.Sprint(l.err) }

type lazy func() string

func (f lazy) String() string { return f() }

func (b *browser) location() fmt.Stringer {
	return lazy(func() string {
		s, _ := evalJS[string](b, "location.pathname + location.search")
		return s
	})
}

// text is the text of the element with the test id.
func (b *browser) text(t *testing.T, testid string) string {
	t.Helper()
	return b.textOf(t, `[data-testid="`+testid+`"]`)
}

// textOf is the text of the element the CSS selector finds.
func (b *browser) textOf(t *testing.T, selector string) string {
	t.Helper()
	s, err := evalJS[string](b, fmt.Sprintf(`document.querySelector(%q)?.textContent.trim() ?? ""`, selector))
	if err != nil {
		t.Fatalf("reading %s: %v", selector, err)
	}
	return s
}

func (b *browser) attr(t *testing.T, testid, name string) string {
	t.Helper()
	s, err := evalJS[string](b, `document.querySelector('[data-testid="`+testid+`"]')?.getAttribute("`+name+`") ?? ""`)
	if err != nil {
		t.Fatalf("reading %s of %s: %v", name, testid, err)
	}
	return s
}

// num is the raw number the page shows in the element's data-value.
func (b *browser) num(t *testing.T, testid string) float64 {
	t.Helper()
	v := b.attr(t, testid, "data-value")
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

func (b *browser) numAbove(testid string, v float64) string {
	return fmt.Sprintf(`Number(document.querySelector('[data-testid="%s"]')?.dataset.value ?? "NaN") > %v`, testid, v)
}

func (b *browser) numIs(testid string, v float64) string {
	return fmt.Sprintf(`Number(document.querySelector('[data-testid="%s"]')?.dataset.value ?? "NaN") === %v`, testid, v)
}

func (b *browser) stateIs(testid, state string) string {
	return fmt.Sprintf(`document.querySelector('[data-testid="%s"]')?.dataset.state === %q`, testid, state)
}

// TestDashboardSignInAndRoles runs a node that requires tokens: the
// dashboard asks for one, refuses a wrong one, keeps a good one for the
// tab's session, and shows only what the token's role may do: a viewer sees
// no pause button and no publish form; an admin pauses the handler.
func TestDashboardSignInAndRoles(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the dashboard test needs Chromium at %s (apt-get install chromium): %v", chromium, err)
	}
	const viewerTok, adminTok = "viewer-token-0123456789", "admin-token-0123456789ab"
	n := startNode(t, sluice.WithConfig(sluice.Config{API: sluice.APIConfig{Tokens: []sluice.Token{
		{Name: "watcher", Role: "viewer", Token: viewerTok},
		{Name: "ops", Role: "admin", Token: adminTok},
	}}}))
	n.token = adminTok
	ep := newEndpoint(t)
	n.apply(t, fmt.Sprintf(`{"name":"orders","topic":"orders","http":{"url":%q}}`, ep.URL))
	n.token = ""
	if code, _, _ := n.do("GET", "/v1/handlers", ""); code != http.StatusUnauthorized {
		t.Fatalf("GET /v1/handlers without a token: %d, want 401", code)
	}

	b := startBrowser(t, n.base)
	b.open(t, "/handlers/orders")
	b.waitFor(t, 10*time.Second, `document.getElementById("login").open`, "the sign-in dialog")
	b.fill(t, "login-token", "wrong-token-000000000")
	b.click(t, "login-submit")
	b.waitFor(t, 10*time.Second, `document.querySelector('[data-testid="login-error"]').textContent === "That token is not valid."`, "the dialog to refuse a wrong token")

	b.fill(t, "login-token", viewerTok)
	b.click(t, "login-submit")
	b.waitFor(t, 10*time.Second, `document.body.dataset.role === "viewer" && !document.getElementById("login").open`, "signed in as viewer")
	b.waitFor(t, 10*time.Second, `document.querySelector("main").dataset.loaded === "handler"`, "the handler page")
	if got := b.text(t, "whoami-role"); got != "viewer" {
		t.Fatalf("header role %q, want viewer", got)
	}
	hidden := func(testid string) string {
		return `(() => { const e = document.querySelector('[data-testid="` + testid + `"]'); return e !== null && e.offsetParent === null; })()`
	}
	b.waitFor(t, 10*time.Second, hidden("pause-button")+" && "+hidden("resume-button"), "no pause or resume button for a viewer")
	// The token survives a reload (the tab's session).
	b.open(t, "/topics")
	b.waitFor(t, 10*time.Second, `document.body.dataset.role === "viewer"`, "still signed in after a reload")
	b.waitFor(t, 10*time.Second, `document.querySelector('[data-testid="topic-messages-orders"]') !== null`, "the topics page's data")
	b.waitFor(t, 10*time.Second, hidden("publish-form"), "no publish form for a viewer")

	b.click(t, "signout")
	b.waitFor(t, 10*time.Second, `document.getElementById("login").open`, "the sign-in dialog after signing out")
	b.fill(t, "login-token", adminTok)
	b.click(t, "login-submit")
	b.waitFor(t, 10*time.Second, `document.body.dataset.role === "admin"`, "signed in as admin")
	b.open(t, "/handlers/orders")
	b.waitFor(t, 10*time.Second, `document.body.dataset.role === "admin"`, "admin after navigating")
	b.click(t, "pause-button")
	b.waitFor(t, 10*time.Second, b.stateIs("handler-state", "paused"), "the handler paused by the admin")
	n.token = viewerTok
	var h api.Handler
	code, body, _ := n.do("GET", "/v1/handlers/orders", "")
	if err := json.Unmarshal(body, &h); code != 200 || err != nil || !h.Paused {
		t.Fatalf("after the admin's pause: %d %s", code, body)
	}
	b.shot(t, filepath.Join(artifactsDir(t), "signed-in-admin.png"))
}

// The handler page draws its chain: who feeds its topic, and which topics
// and handlers its onSuccess and onFailure feed; and it shows the filtered
// and emitted counts.
func TestDashboardHandlerChain(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the dashboard test needs Chromium at %s (apt-get install chromium): %v", chromium, err)
	}
	n := startNode(t)
	n.apply(t, `{"name":"up","topic":"uploads","http":{"url":"http://127.0.0.1:1/x"},"onSuccess":{"topic":"thumbs"}}`)
	n.apply(t, `{"name":"mid","topic":"thumbs","http":{"url":"http://127.0.0.1:1/x"},"filter":{"key":[{"prefix":"img-"}]},"onSuccess":{"topic":"catalog"},"onFailure":{"topic":"thumbs-failed"}}`)
	n.apply(t, `{"name":"down","topic":"catalog","http":{"url":"http://127.0.0.1:1/x"}}`)
	b := startBrowser(t, n.base)
	b.open(t, "/handlers/mid")
	b.waitFor(t, 20*time.Second, `document.querySelector('[data-testid="chain-handler-down"]') !== null`, "the chain drawn")
	for testid, want := range map[string]string{
		"chain-handler-up":      "up",
		"chain-in":              "thumbs",
		"chain-onSuccess-topic": "catalog",
		"chain-handler-down":    "down",
		"chain-onFailure-topic": "thumbs-failed",
		"chain-onFailure":       "→onFailure thumbs-failed→no handler yet",
		"stat-filtered":         "0",
		"stat-emitted":          "0",
	} {
		if got := b.text(t, testid); got != want {
			t.Errorf("%s: %q, want %q", testid, got, want)
		}
	}
	if href := b.attr(t, "chain-handler-down", "href"); href != "/handlers/down" {
		t.Fatalf("the downstream handler links to %q", href)
	}
	// The last handler of the chain shows its feeder and that it emits nothing.
	b.open(t, "/handlers/down")
	b.waitFor(t, 20*time.Second, `document.querySelector('[data-testid="chain-handler-mid"]') !== null`, "down's feeder")
	if got := b.text(t, "handler-chain"); !strings.Contains(got, "no onSuccess") {
		t.Fatalf("down's chain: %q", got)
	}
}
