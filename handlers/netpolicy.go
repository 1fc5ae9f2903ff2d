package handlers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// netpolicy.go: which addresses HTTP handlers may reach (server-side
// request forgery). A handler's URL is checked twice: when the spec is
// applied (CheckURL, a 400 naming http.url), and on every connection the
// invoker opens, against the address the name resolved to then
// (NetPolicy.dialContext), so that DNS rebinding, a changed configuration
// or a proxy cannot get around the rule.

// Default deny lists: link-local networks (169.254.0.0/16 holds the
// metadata service of AWS, GCP, Azure, Oracle and DigitalOcean) and the
// other cloud metadata addresses. Loopback and private networks stay
// allowed: handlers often run on the same machine or network.
var (
	DefaultDeniedNetworks = []string{
		"169.254.0.0/16",     // IPv4 link-local, 169.254.169.254 among them
		"fe80::/10",          // IPv6 link-local
		"fd00:ec2::254/128",  // AWS metadata over IPv6
		"100.100.100.200/32", // Alibaba Cloud metadata
		"168.63.129.16/32",   // Azure WireServer
	}
	DefaultDeniedHosts = []string{"metadata.google.internal"}
)

// NetPolicy says which addresses HTTP handlers may reach. The zero value
// (and nil) allows everything.
type NetPolicy struct {
	// AllowedHosts and AllowedNetworks, when either is set, are the only
	// destinations allowed (allow-list mode): a URL whose host is a name
	// matching AllowedHosts ("name" or "*.domain"), or whose address is in
	// AllowedNetworks.
	AllowedHosts    []string
	AllowedNetworks []netip.Prefix
	// DeniedHosts and DeniedNetworks are refused whatever the allow
	// lists say.
	DeniedHosts    []string
	DeniedNetworks []netip.Prefix
	// Resolver resolves names at apply time; nil is net.DefaultResolver.
	// The dial-time check uses the address the dialer connects to.
	Resolver interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

// DefaultNetPolicy denies DefaultDeniedNetworks and DefaultDeniedHosts.
func DefaultNetPolicy() *NetPolicy {
	p, err := NewNetPolicy(nil, nil, DefaultDeniedHosts, DefaultDeniedNetworks)
	if err != nil {
		panic(err)
	}
	return p
}

// NewNetPolicy builds a policy from the config's lists; networks are CIDRs
// or single addresses. The error names the entry that is wrong.
func NewNetPolicy(allowedHosts, allowedNetworks, deniedHosts, deniedNetworks []string) (*NetPolicy, error) {
	p := &NetPolicy{}
	var err error
	if p.AllowedHosts, err = parseHostPatterns("allowedHosts", allowedHosts); err != nil {
		return nil, err
	}
	if p.DeniedHosts, err = parseHostPatterns("deniedHosts", deniedHosts); err != nil {
		return nil, err
	}
	if p.AllowedNetworks, err = parsePrefixes("allowedNetworks", allowedNetworks); err != nil {
		return nil, err
	}
	if p.DeniedNetworks, err = parsePrefixes("deniedNetworks", deniedNetworks); err != nil {
		return nil, err
	}
	return p, nil
}

func parseHostPatterns(key string, list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for i, h := range list {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		name := strings.TrimPrefix(h, "*.")
		if name == "" || strings.ContainsAny(name, "*/:@ []") || strings.Contains(name, "..") {
			return nil, fmt.Errorf("%s[%d]: %q is not a host name: use name or *.domain", key, i, list[i])
		}
		out = append(out, h)
	}
	return out, nil
}

func parsePrefixes(key string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %q is not a network: use a CIDR such as 10.0.0.0/8 or an address", key, i, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// RefusedError is a destination the policy refuses. A refused invocation
// is a permanent failure: the message is dead-lettered with this reason.
type RefusedError struct {
	Host string // the host of the URL, or the address dialled
	Addr string // the address refused, when the host is a name
	Rule string // the config key, such as handlers.deniedNetworks
	Why  string // the matching entry, or why no entry matched
}

func (e *RefusedError) Error() string {
	s := e.Host
	if e.Addr != "" && e.Addr != e.Host {
		s += " (" + e.Addr + ")"
	}
	return fmt.Sprintf("%s is refused by %s: %s", s, e.Rule, e.Why)
}

func (p *NetPolicy) allowList() bool {
	return p != nil && (len(p.AllowedHosts) > 0 || len(p.AllowedNetworks) > 0)
}

// checkName judges a host name (not an address): refused when DeniedHosts
// matches it; allowed reports whether AllowedHosts does.
func (p *NetPolicy) checkName(host string) (allowed bool, err error) {
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	for _, d := range p.DeniedHosts {
		if matchHost(d, name) {
			return false, &RefusedError{Host: host, Rule: "handlers.deniedHosts", Why: "matches " + d}
		}
	}
	for _, a := range p.AllowedHosts {
		if matchHost(a, name) {
			return true, nil
		}
	}
	return false, nil
}

func matchHost(pattern, name string) bool {
	if d, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(name, "."+d)
	}
	return pattern == name
}

// checkAddr judges an address; nameAllowed says the host name it was
// resolved from is in AllowedHosts.
func (p *NetPolicy) checkAddr(host string, a netip.Addr, nameAllowed bool) error {
	a = a.Unmap().WithZone("")
	for _, n := range p.DeniedNetworks {
		if n.Contains(a) {
			return &RefusedError{Host: host, Addr: a.String(), Rule: "handlers.deniedNetworks", Why: "in " + n.String()}
		}
	}
	if !p.allowList() || nameAllowed {
		return nil
	}
	for _, n := range p.AllowedNetworks {
		if n.Contains(a) {
			return nil
		}
	}
	return &RefusedError{Host: host, Addr: a.String(), Rule: "handlers.allowedHosts/allowedNetworks",
		Why: "the host matches no allowed host and the address is in no allowed network"}
}

// CheckHost judges a URL's host (a name or an address, without the port):
// the name against the host lists, then every address it resolves to.
// A name that cannot be resolved now is not refused (the dial-time check
// judges the addresses it resolves to later), except in allow-list mode
// when the name is not an allowed host.
func (p *NetPolicy) CheckHost(ctx context.Context, host string) error {
	if p == nil {
		return nil
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(host); err == nil {
		return p.checkAddr(host, a, false)
	}
	nameAllowed, err := p.checkName(host)
	if err != nil {
		return err
	}
	if !nameAllowed && p.allowList() && len(p.AllowedNetworks) == 0 {
		return &RefusedError{Host: host, Rule: "handlers.allowedHosts", Why: "matches no allowed host"}
	}
	if len(p.DeniedNetworks) == 0 && (nameAllowed || !p.allowList()) {
		return nil
	}
	var r interface {
		LookupNetIP(context.Context, string, string) ([]netip.Addr, error)
	} = net.DefaultResolver
	if p.Resolver != nil {
		r = p.Resolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		if !nameAllowed && p.allowList() {
			// Allow-list mode: what cannot be checked is not allowed.
			return &RefusedError{Host: host, Rule: "handlers.allowedHosts/allowedNetworks",
				Why: "the host matches no allowed host and cannot be resolved to check its addresses: " + err.Error()}
		}
		return nil
	}
	for _, a := range addrs {
		if err := p.checkAddr(host, a, nameAllowed); err != nil {
			return err
		}
	}
	return nil
}

// CheckURL checks a spec's URL at apply time; field names it in the
// error (http.url).
func (p *NetPolicy) CheckURL(ctx context.Context, field, raw string) error {
	if p == nil {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return &FieldError{Field: field, Msg: "must be an absolute http(s) URL"}
	}
	if err := p.CheckHost(ctx, u.Hostname()); err != nil {
		return &FieldError{Field: field, Msg: err.Error()}
	}
	return nil
}

// CheckSpec checks every URL of a spec: http.url today.
func (p *NetPolicy) CheckSpec(ctx context.Context, s *Spec) error {
	if s.HTTP != nil {
		return p.CheckURL(ctx, "http.url", s.HTTP.URL)
	}
	return nil
}

// dialContext dials through d, refusing any connection to an address the
// policy refuses. The check runs in the dialer's Control function, on the
// address about to be connected to, after the name was resolved.
func (p *NetPolicy) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if p == nil {
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		nameAllowed := false
		if _, err := netip.ParseAddr(host); err != nil {
			if nameAllowed, err = p.checkName(host); err != nil {
				return nil, err
			}
		}
		dd := *d
		dd.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &RefusedError{Host: host, Addr: address, Rule: "handlers", Why: "the address cannot be read"}
			}
			return p.checkAddr(host, ap.Addr(), nameAllowed)
		}
		return dd.DialContext(ctx, network, addr)
	}
}

// proxy wraps a transport's Proxy function: a request that goes through a
// proxy never dials its destination here, so its host is checked (and
// resolved) before the proxy is used.
func (p *NetPolicy) proxy(next func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	if p == nil {
		return next
	}
	return func(req *http.Request) (*url.URL, error) {
		u, err := next(req)
		if err != nil || u == nil {
			return u, err
		}
		if err := p.CheckHost(req.Context(), req.URL.Hostname()); err != nil {
			return nil, err
		}
		return u, nil
	}
}

// refused finds a policy refusal in a transport error.
func refused(err error) (*RefusedError, bool) {
	var re *RefusedError
	ok := errors.As(err, &re)
	return re, ok
}
