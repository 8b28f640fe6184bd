package extauthz

import (
	"slices"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Request is what a decision needs from a CheckRequest (or from the HTTP
// authorization endpoint): transport-neutral and read once.
type Request struct {
	Method string
	Path   string // as sent: path and query
	// Authorization and Org hold the header values; the counts tell a
	// missing header (0) from a repeated one (>1), which is rejected.
	Authorization string
	AuthCount     int
	Org           string
	OrgCount      int
	RequestID     string
	Extensions    map[string]string // Envoy's per-route context_extensions
	// Source is the peer address Envoy saw; ForwardedFor the
	// X-Forwarded-For header, for TrustedHops.
	Source       string
	ForwardedFor string
	// TraceParent and TraceState are the W3C trace context headers, read
	// only when tracing is on.
	TraceParent, TraceState string
	// Strip lists client-sent headers under the reserved x-keygate- prefix
	// that Keygate does not set itself: they are removed before the upstream.
	Strip []string
}

const reservedPrefix = "x-keygate-"

// headerNames are the names a request reader looks for, lower case.
type headerNames struct {
	auth, org string
	injected  map[string]bool
	exts      *extCache // for the wire reader
	trace     bool      // read traceparent and tracestate
	// metaOther are the metadata headers outside reservedPrefix: removed
	// when a client sends them, as reservedPrefix's are.
	metaOther []string
}

// fromCheck maps a CheckRequest. Envoy sends headers either in the headers
// map (repeated values comma-joined) or, with encode_raw_headers, in
// header_map (repeated entries, values possibly only in raw_value).
func (n *headerNames) fromCheck(req *authv3.CheckRequest) Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	r := Request{Method: h.GetMethod(), Path: h.GetPath(), RequestID: h.GetId(), Extensions: attrs.GetContextExtensions(),
		Source: attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()}
	if hm := h.GetHeaderMap(); hm != nil && len(hm.GetHeaders()) > 0 {
		for _, hv := range hm.GetHeaders() {
			v := hv.GetValue()
			if v == "" && len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			n.header(&r, strings.ToLower(hv.GetKey()), v, false)
		}
		return r
	}
	for k, v := range h.GetHeaders() {
		n.header(&r, k, v, true)
	}
	return r
}

// header takes one header. joined says repeated values may arrive
// comma-joined in v; a comma never appears in a valid key or organization
// id, so a comma there means the header was sent twice.
func (n *headerNames) header(r *Request, k, v string, joined bool) {
	switch {
	case k == n.auth:
		r.Authorization = v
		r.AuthCount++
		if joined && strings.IndexByte(v, ',') >= 0 {
			r.AuthCount++
		}
	case k == n.org:
		r.Org = v
		r.OrgCount++
		if joined && strings.IndexByte(v, ',') >= 0 {
			r.OrgCount++
		}
	case k == "x-request-id":
		r.RequestID = v
	case k == "x-forwarded-for":
		r.ForwardedFor = v
	case n.trace && k == "traceparent":
		r.TraceParent = v
	case n.trace && k == "tracestate":
		r.TraceState = v
	case strings.HasPrefix(k, reservedPrefix) && !n.injected[k]:
		r.Strip = append(r.Strip, k)
	case len(n.metaOther) > 0 && slices.Contains(n.metaOther, k):
		r.Strip = append(r.Strip, k)
	}
}

// bearer extracts the token of "Bearer <token>"; the scheme is
// case-insensitive (RFC 9110 §11.1) and the token must be one word.
func bearer(v string) (string, bool) {
	const scheme = "bearer"
	if len(v) <= len(scheme)+1 || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false
	}
	tok := strings.Trim(rest, " \t")
	if tok == "" || strings.ContainsAny(tok, " \t,") {
		return "", false
	}
	return tok, true
}
