package api

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Browser safety. A web page the operator opens can send requests to the
// node from the operator's browser: simple cross-site requests (a form
// post, a no-cors fetch) carry no custom header and skip the CORS
// preflight, and DNS rebinding makes an attacker's name point at the node.
// Three checks close this, each before any route runs:
//
//   - Host: the request must name the node (hostAllowed); 421 otherwise.
//   - Origin: when a browser says where the request comes from, it must be
//     the node itself; 403 otherwise.
//   - Content-Type: a request that changes something (POST, PUT, PATCH,
//     DELETE on /v1/) must say application/json (or YAML for specs): a
//     type no browser sends cross-site without a preflight, which the node
//     never grants. 415 otherwise.

// hostAllowed reports whether the Host header names this node: an IP
// address (DNS rebinding needs a name), localhost, or one of allowed ("*"
// allows any name; "*.example.com" any name under example.com).
func hostAllowed(host string, allowed []string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
	if h == "" {
		return false
	}
	if net.ParseIP(h) != nil || h == "localhost" {
		return true
	}
	for _, a := range allowed {
		a = strings.ToLower(a)
		switch {
		case a == "*" || a == h:
			return true
		case strings.HasPrefix(a, "*.") && strings.HasSuffix(h, a[1:]):
			return true
		}
	}
	return false
}

// originAllowed reports whether origin (the Origin header, when present)
// is the node's own: the same host and port the request was sent to, or a
// host in allowed (a proxy in front of the node may rewrite Host).
func originAllowed(origin, host string, allowed []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // "null" (a sandboxed or file page) included
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	for _, a := range allowed {
		if a != "*" && hostAllowed(u.Host, []string{a}) && net.ParseIP(u.Hostname()) == nil && u.Hostname() != "localhost" {
			return true
		}
	}
	return false
}

// mutating reports whether method changes something.
func mutating(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// apiMediaType reports whether ct is JSON or YAML.
func apiMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case "application/json", "application/yaml", "application/x-yaml", "text/yaml":
		return true
	}
	return strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// browserCheck answers and returns false for a request that fails one of
// the checks above. /healthz and /readyz are exempt: probes may use any
// name, and they change and reveal nothing.
func (s *server) browserCheck(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
		return true
	}
	if !hostAllowed(r.Host, s.cfg.AllowedHosts) {
		writeErr(w, http.StatusMisdirectedRequest, fmt.Errorf("host %q is not a name of this node: add it to api.allowedHosts", r.Host))
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && !originAllowed(o, r.Host, s.cfg.AllowedHosts) {
		writeErr(w, http.StatusForbidden, fmt.Errorf("cross-origin request from %q refused: the API serves only its own dashboard", o))
		return false
	}
	if strings.HasPrefix(r.URL.Path, "/v1/") && mutating(r.Method) && !apiMediaType(r.Header.Get("Content-Type")) {
		writeErr(w, http.StatusUnsupportedMediaType, fmt.Errorf("%s %s needs Content-Type: application/json, got %q", r.Method, r.URL.Path, r.Header.Get("Content-Type")))
		return false
	}
	return true
}
