// Package deploy_test checks the deployment files against the code they
// deploy: every metric the Grafana dashboard queries is one a real node
// exports, and the Kubernetes manifests are well-formed and agree with each
// other and with `sluice serve`'s flags.
package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/cli"
	"github.com/sluicehq/sluice/internal/testkit"
)

// ---------------------------------------------------------------- Grafana

// scraperLabels are added by Prometheus when it scrapes, so a node's
// /metrics never has them.
var scraperLabels = map[string]bool{"instance": true, "job": true}

func TestGrafanaQueriesUseExportedMetrics(t *testing.T) {
	queries := dashboardQueries(t, filepath.Join("grafana", "sluice.json"))
	if len(queries) < 10 {
		t.Fatalf("found %d queries in the dashboard; the walk is broken", len(queries))
	}
	metrics, labels := map[string][]string{}, map[string][]string{}
	for _, q := range queries {
		ms, ls := promqlRefs(q)
		if len(ms) == 0 {
			t.Errorf("query uses no sluice_ or messaging_ metric: %s", q)
		}
		for _, m := range ms {
			metrics[m] = append(metrics[m], q)
		}
		for _, l := range ls {
			labels[l] = append(labels[l], q)
		}
	}

	base, wantSucceeded := runHandledNode(t)
	var sc scrape
	var missing []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		sc = parseScrape(t, get(t, base+"/metrics"))
		missing = missing[:0]
		for m := range metrics {
			if !sc.has(m) {
				missing = append(missing, m)
			}
		}
		// Gauges fed by the sampler appear a sample after the handler
		// starts; everything else is there once the messages are handled.
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("the dashboard queries %s, which a node does not export; used in:\n  %s", m, strings.Join(metrics[m], "\n  "))
	}
	for l, qs := range labels {
		if !scraperLabels[l] && !sc.labels[l] {
			t.Errorf("the dashboard uses label %s, which no sluice_ or messaging_ series has; used in:\n  %s", l, strings.Join(qs, "\n  "))
		}
	}
	// The scrape is of this test's traffic, not of an idle node.
	if v, ok := sc.value("sluice_messages_succeeded_total", "sluice_handler", "deployed"); !ok || v != float64(wantSucceeded) {
		t.Errorf("sluice_messages_succeeded_total{sluice_handler=\"deployed\"} = %v (found %v), want %d", v, ok, wantSucceeded)
	}
	if v, ok := sc.value("sluice_messages_dead_lettered_total", "sluice_handler", "deployed"); !ok || v != 1 {
		t.Errorf("sluice_messages_dead_lettered_total{sluice_handler=\"deployed\"} = %v (found %v), want 1", v, ok)
	}
	if !t.Failed() {
		t.Logf("%d queries use %d metrics and %d labels, all exported", len(queries), len(metrics), len(labels))
	}
}

// dashboardQueries returns every "expr" anywhere in the dashboard (panels,
// rows' nested panels, targets) and the query of every templating variable.
func dashboardQueries(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "expr" {
					out = append(out, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(d)
	tmpl, _ := d.(map[string]any)["templating"].(map[string]any)
	vars, _ := tmpl["list"].([]any)
	for _, v := range vars {
		v, _ := v.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		switch q := v["query"].(type) {
		case string:
			out = append(out, q)
		case map[string]any:
			if s, ok := q["query"].(string); ok {
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

var (
	identRE     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	stringRE    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	matchersRE  = regexp.MustCompile(`\{([^}]*)\}`)
	matcherRE   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingRE  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	rangeRE     = regexp.MustCompile(`\[[^\]]*\]`)
	labelValsRE = regexp.MustCompile(`label_values\(\s*([^,]+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
)

// promqlRefs returns the sluice_ and messaging_ metric names a query
// selects and the label names it matches or groups on. Label names share
// the metric prefixes (sluice_handler), so matchers and grouping clauses
// are taken out before the metric names are read.
func promqlRefs(q string) (metrics, labels []string) {
	q = stringRE.ReplaceAllString(q, `""`)
	// Grafana's label_values(metric, label) names a label outside braces.
	q = labelValsRE.ReplaceAllStringFunc(q, func(m string) string {
		sub := labelValsRE.FindStringSubmatch(m)
		labels = append(labels, sub[2])
		return sub[1]
	})
	q = matchersRE.ReplaceAllStringFunc(q, func(m string) string {
		for _, sub := range matcherRE.FindAllStringSubmatch(m, -1) {
			labels = append(labels, sub[1])
		}
		return " "
	})
	q = groupingRE.ReplaceAllStringFunc(q, func(m string) string {
		in := groupingRE.FindStringSubmatch(m)[1]
		for _, l := range strings.Split(in, ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		return " "
	})
	q = rangeRE.ReplaceAllString(q, " ")
	for _, id := range identRE.FindAllString(q, -1) {
		if strings.HasPrefix(id, "sluice_") || strings.HasPrefix(id, "messaging_") {
			metrics = append(metrics, id)
		}
	}
	sort.Strings(metrics)
	sort.Strings(labels)
	return slices.Compact(metrics), slices.Compact(labels)
}

func TestPromQLRefs(t *testing.T) {
	for _, tc := range []struct {
		q               string
		metrics, labels []string
	}{
		{`histogram_quantile(0.99, sum by (sluice_handler, le) (rate(messaging_process_duration_seconds_bucket{sluice_handler=~"$handler", sluice_outcome!="x"}[$__rate_interval])))`,
			[]string{"messaging_process_duration_seconds_bucket"}, []string{"le", "sluice_handler", "sluice_outcome"}},
		{`max by (instance) (sluice_breaker_state) / on(sluice_handler) group_left sluice_concurrency_limit`,
			[]string{"sluice_breaker_state", "sluice_concurrency_limit"}, []string{"instance", "sluice_handler"}},
		{`label_values(sluice_concurrency_limit, sluice_handler)`,
			[]string{"sluice_concurrency_limit"}, []string{"sluice_handler"}},
		{`sum(sluice_inflight{messaging_system="sluice_not_a_metric"})`,
			[]string{"sluice_inflight"}, []string{"messaging_system"}},
	} {
		m, l := promqlRefs(tc.q)
		if !slices.Equal(m, tc.metrics) || !slices.Equal(l, tc.labels) {
			t.Errorf("%s:\n got metrics %q labels %q\nwant metrics %q labels %q", tc.q, m, l, tc.metrics, tc.labels)
		}
	}
}

// scrape is a parsed Prometheus text exposition.
type scrape struct {
	samples map[string][]string // sample name -> each sample's line
	types   map[string]string   // family name -> counter, gauge, histogram...
	// labels are the label names on any sluice_ or messaging_ sample.
	labels map[string]bool
}

var sampleLabelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)

func parseScrape(t *testing.T, text string) scrape {
	t.Helper()
	sc := scrape{samples: map[string][]string{}, types: map[string]string{}, labels: map[string]bool{}}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			sc.types[f[2]] = f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		sc.samples[name] = append(sc.samples[name], line)
		if strings.HasPrefix(name, "sluice_") || strings.HasPrefix(name, "messaging_") {
			if i := strings.IndexByte(line, '{'); i >= 0 {
				for _, m := range sampleLabelRE.FindAllStringSubmatch(line[i:strings.LastIndexByte(line, '}')], -1) {
					sc.labels[m[1]] = true
				}
			}
		}
	}
	if len(sc.samples) == 0 {
		t.Fatalf("/metrics has no samples:\n%s", text)
	}
	return sc
}

// has reports whether the scrape has samples named name. A histogram's
// _bucket, _sum and _count count only when the family is a histogram.
func (sc scrape) has(name string) bool {
	if len(sc.samples[name]) == 0 {
		return false
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && sc.types[name] == "" {
			return sc.types[base] == "histogram"
		}
	}
	return true
}

// value returns the value of the first sample of name with label=val.
func (sc scrape) value(name, label, val string) (float64, bool) {
	for _, line := range sc.samples[name] {
		if strings.Contains(line, label+`="`+val+`"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// runHandledNode starts a node on its embedded broker, registers the HTTP
// handler "deployed", publishes messages of which one fails permanently,
// and waits until all are handled and committed. It returns the node's
// base URL and how many messages succeeded.
func runHandledNode(t *testing.T) (base string, succeeded int) {
	t.Helper()
	app, err := sluice.New(sluice.WithDataDir(t.TempDir()), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr("127.0.0.1:0"), sluice.WithLogger(testkit.Logger()), sluice.WithSampleInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("node did not stop within 60s")
		}
	})
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("node exited: %v", err)
	}
	base = "http://" + app.HTTPAddr()
	testkit.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "node ready")

	var mu sync.Mutex
	ok := map[string]bool{}
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) == "poison" {
			w.WriteHeader(http.StatusBadRequest) // permanent: dead-lettered at once
			return
		}
		time.Sleep(time.Millisecond)
		mu.Lock()
		ok[string(b)] = true
		mu.Unlock()
	}))
	t.Cleanup(ep.Close)
	do(t, "PUT", base+"/v1/handlers/deployed", fmt.Sprintf(`{"name":"deployed","topic":"deployed","http":{"url":%q}}`, ep.URL), 201)

	const n = 40
	msgs := make([]string, 0, n+1)
	for i := range n {
		msgs = append(msgs, fmt.Sprintf(`{"key":"k%d","value":"ok-%d"}`, i%7, i))
	}
	msgs = append(msgs, `{"value":"poison"}`)
	do(t, "POST", base+"/v1/topics/deployed/messages", `{"messages":[`+strings.Join(msgs, ",")+`]}`, 200)

	testkit.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		handled := len(ok)
		mu.Unlock()
		var h api.Handler
		if err := json.Unmarshal([]byte(get(t, base+"/v1/handlers/deployed")), &h); err != nil || h.Status == nil {
			return false
		}
		st := h.Status
		return handled == n && st.Succeeded == n && st.DeadLettered == 1 && st.Commits > 0 && st.Lag == 0
	}, "%d messages handled, 1 dead-lettered, all committed", n)
	return base, n
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v: %s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

func do(t *testing.T, method, url, body string, want int) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %d %s, want %d", method, url, resp.StatusCode, b, want)
	}
}

// ---------------------------------------------------------------- Kubernetes

// object is one Kubernetes document, with its file for messages.
type object struct {
	file string
	doc  map[string]any
}

func (o object) kind() string      { s, _ := o.doc["kind"].(string); return s }
func (o object) name() string      { s, _ := dig(o.doc, "metadata", "name").(string); return s }
func (o object) namespace() string { s, _ := dig(o.doc, "metadata", "namespace").(string); return s }
func (o object) String() string {
	return fmt.Sprintf("%s %s/%s", o.file, o.kind(), o.name())
}

// dig follows keys (strings for maps, ints for lists) into v.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := map[string]string{}
	for k, e := range m {
		out[k] = fmt.Sprint(e)
	}
	return out
}

// readManifests parses every YAML document under dir.
func readManifests(t *testing.T, dir string) (objs []object, files []string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.y*ml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no YAML under %s: %v", dir, err)
	}
	for _, p := range paths {
		files = append(files, filepath.Base(p))
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for i := 0; ; i++ {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				t.Fatalf("%s, document %d: %v", p, i+1, err)
			}
			if doc == nil {
				continue // an empty document, as after a trailing ---
			}
			objs = append(objs, object{file: filepath.Base(p), doc: doc})
		}
		f.Close()
	}
	return objs, files
}

func TestKubernetesManifests(t *testing.T) {
	objs, files := readManifests(t, "kubernetes")
	byKind := map[string][]object{}
	for _, o := range objs {
		version, _ := o.doc["apiVersion"].(string)
		if version == "" || o.kind() == "" || o.name() == "" {
			t.Errorf("%s, a document lacks apiVersion, kind or metadata.name: apiVersion %q, kind %q, name %q", o.file, version, o.kind(), o.name())
		}
		byKind[o.kind()] = append(byKind[o.kind()], o)
	}
	for _, k := range []string{"Namespace", "ConfigMap", "Deployment", "Service", "ServiceMonitor", "ScaledObject", "Kustomization"} {
		if len(byKind[k]) != 1 {
			t.Fatalf("%d %s documents, want 1", len(byKind[k]), k)
		}
	}
	dep, svc, so := byKind["Deployment"][0], byKind["Service"][0], byKind["ScaledObject"][0]

	t.Run("every object is in the namespace", func(t *testing.T) {
		ns := byKind["Namespace"][0].name()
		for _, o := range objs {
			if got, _ := dig(o.doc, "metadata", "namespace").(string); o.kind() != "Namespace" && o.kind() != "Kustomization" && got != ns {
				t.Errorf("%s is in namespace %q, want %q", o, got, ns)
			}
		}
	})

	t.Run("kustomization lists every file", func(t *testing.T) {
		k := byKind["Kustomization"][0]
		var want []string
		for _, f := range files {
			if f != k.file {
				want = append(want, f)
			}
		}
		got := strs(dig(k.doc, "resources"))
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s resources %q, want the other files %q", k.file, got, want)
		}
	})

	t.Run("deployment", func(t *testing.T) {
		spec := dig(dep.doc, "spec", "template", "spec")
		c := dig(spec, "containers", 0)
		args := strs(dig(c, "args"))
		if len(args) == 0 || args[0] != "serve" || !slices.Contains(args, "--brokers") {
			t.Fatalf("%s args %q: want serve ... --brokers", dep, args)
		}
		// Every flag is one `sluice serve` has, so the pod does not crash
		// on start with a usage error.
		serve, _, err := cli.NewRootCmd(cli.Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}).Find([]string{"serve"})
		if err != nil {
			t.Fatal(err)
		}
		drain := sluice.DefaultConfig().DrainTimeout
		for i, a := range args {
			name, ok := strings.CutPrefix(a, "--")
			if !ok {
				continue
			}
			name, _, _ = strings.Cut(name, "=")
			if serve.Flags().Lookup(name) == nil {
				t.Errorf("%s: `sluice serve` has no flag --%s", dep, name)
			}
			if name == "drain-timeout" && i+1 < len(args) {
				if drain, err = time.ParseDuration(args[i+1]); err != nil {
					t.Errorf("%s: --drain-timeout %q: %v", dep, args[i+1], err)
				}
			}
		}
		i := slices.Index(args, "--brokers")
		if i+1 >= len(args) || args[i+1] != "$(KAFKA_BROKERS)" {
			t.Errorf("%s: --brokers is not followed by $(KAFKA_BROKERS): %q", dep, args)
		}
		// Kubernetes leaves an undefined $(VAR) as it is: check each one.
		env := map[string]any{}
		for j := 0; dig(c, "env", j) != nil; j++ {
			e := dig(c, "env", j)
			env[fmt.Sprint(dig(e, "name"))] = e
		}
		for _, a := range args {
			for _, m := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
				if env[m[1]] == nil {
					t.Errorf("%s: arg %q uses $(%s), which the container's env does not define", dep, a, m[1])
				}
			}
		}
		if ref := dig(env["KAFKA_BROKERS"], "valueFrom", "configMapKeyRef"); dig(ref, "name") != byKind["ConfigMap"][0].name() || dig(ref, "key") != "KAFKA_BROKERS" {
			t.Errorf("%s: KAFKA_BROKERS does not come from the ConfigMap's KAFKA_BROKERS: %v", dep, ref)
		}
		grace, _ := dig(spec, "terminationGracePeriodSeconds").(int)
		if time.Duration(grace)*time.Second <= drain {
			t.Errorf("%s: terminationGracePeriodSeconds %d is not above the drain timeout %s", dep, grace, drain)
		}
		for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
			if got := dig(c, probe, "httpGet", "path"); got != path {
				t.Errorf("%s: %s path %v, want %s", dep, probe, got, path)
			}
		}
		if dig(c, "resources", "requests") == nil || dig(c, "resources", "limits", "memory") == nil {
			t.Errorf("%s: want resource requests and a memory limit", dep)
		}
		sel := stringMap(dig(dep.doc, "spec", "selector", "matchLabels"))
		pod := stringMap(dig(dep.doc, "spec", "template", "metadata", "labels"))
		if len(sel) == 0 || !subset(sel, pod) {
			t.Errorf("%s: selector %v does not select its pods %v", dep, sel, pod)
		}
		if !subset(stringMap(dig(svc.doc, "spec", "selector")), pod) {
			t.Errorf("%s selector %v does not select the Deployment's pods %v", svc, dig(svc.doc, "spec", "selector"), pod)
		}
	})

	t.Run("service monitor scrapes the service", func(t *testing.T) {
		sm := byKind["ServiceMonitor"][0]
		if !subset(stringMap(dig(sm.doc, "spec", "selector", "matchLabels")), stringMap(dig(svc.doc, "metadata", "labels"))) {
			t.Errorf("%s selector does not match %s's labels", sm, svc)
		}
		port := dig(sm.doc, "spec", "endpoints", 0, "port")
		var ports []string
		for j := 0; dig(svc.doc, "spec", "ports", j) != nil; j++ {
			ports = append(ports, fmt.Sprint(dig(svc.doc, "spec", "ports", j, "name")))
		}
		if !slices.Contains(ports, fmt.Sprint(port)) || dig(sm.doc, "spec", "endpoints", 0, "path") != "/metrics" {
			t.Errorf("%s scrapes port %v path %v; the Service's ports are %q", sm, port, dig(sm.doc, "spec", "endpoints", 0, "path"), ports)
		}
	})

	t.Run("scaled object", func(t *testing.T) {
		ref := dig(so.doc, "spec", "scaleTargetRef")
		if dig(ref, "name") != dep.name() || (dig(ref, "kind") != nil && dig(ref, "kind") != "Deployment") {
			t.Errorf("%s scaleTargetRef %v, want the Deployment %s", so, ref, dep.name())
		}
		// The external trigger points at the Service's scaler port, which
		// is the container's, which --scaler-addr listens on.
		external := 0
		for j := 0; dig(so.doc, "spec", "triggers", j) != nil; j++ {
			tr := dig(so.doc, "spec", "triggers", j)
			if dig(tr, "type") != "external" {
				continue
			}
			external++
			addr := stringMap(dig(tr, "metadata"))["scalerAddress"]
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host != svc.name()+"."+svc.namespace()+".svc" {
				t.Errorf("%s trigger %d: scalerAddress %q, want %s.%s.svc:PORT", so, j, addr, svc.name(), svc.namespace())
				continue
			}
			var target any
			for k := 0; dig(svc.doc, "spec", "ports", k) != nil; k++ {
				if fmt.Sprint(dig(svc.doc, "spec", "ports", k, "port")) == port {
					target = dig(svc.doc, "spec", "ports", k, "targetPort")
				}
			}
			c := dig(dep.doc, "spec", "template", "spec", "containers", 0)
			var containerPort string
			for k := 0; dig(c, "ports", k) != nil; k++ {
				if dig(c, "ports", k, "name") == target {
					containerPort = fmt.Sprint(dig(c, "ports", k, "containerPort"))
				}
			}
			args := strs(dig(c, "args"))
			i := slices.Index(args, "--scaler-addr")
			if containerPort == "" || i < 0 || i+1 >= len(args) || !strings.HasSuffix(args[i+1], ":"+containerPort) {
				t.Errorf("%s: scalerAddress %s goes to Service target %v, container port %q, but --scaler-addr is %q", so, addr, target, containerPort, args)
			}
		}
		if external == 0 {
			t.Errorf("%s has no external trigger", so)
		}
	})
}

// subset reports whether every pair of a is in b.
func subset(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
