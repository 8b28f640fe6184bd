package extauthz

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// HTTPPrefix is where the HTTP authorization endpoint lives on the HTTP
// listener.
const HTTPPrefix = "/authz"

// HTTPHandler answers proxies that ask over HTTP rather than gRPC: Envoy's
// http_service, nginx auth_request, Traefik forwardAuth. It runs the same
// Decide as Check and renders the same headers and bodies: 200 with the
// injected headers, or the denial's status, headers and JSON body.
func (s *Server) HTTPHandler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	start := time.Now()
	r := s.names.fromHTTP(hr)
	ctx := hr.Context()
	var span trace.Span
	if s.cfg.Tracer != nil {
		ctx, span = s.startSpan(ctx, &r, httpSpanName)
	}
	d := s.decideAt(ctx, &r, start)
	h := w.Header()
	if d.Code == CodeIntrospection {
		for _, kv := range s.introspectionHeaders(&d) {
			h.Set(kv.key, kv.value)
		}
		h.Set("x-keygate-code", d.Code.String())
		w.WriteHeader(http.StatusOK)
		w.Write(s.introspectionBody(&d))
	} else if d.Code == CodeOK {
		for _, kv := range s.responseHeaders(&d, s.upstreamHeaders(&d, nil)) {
			h.Set(kv.key, kv.value)
		}
		// Envoy's http_service reads the headers to drop from this one.
		h.Set("x-envoy-auth-headers-to-remove", strings.Join(s.removedHeaders(&d), ", "))
		w.WriteHeader(http.StatusOK)
	} else {
		for _, kv := range s.deniedHeaders(&d) {
			h.Set(kv.key, kv.value)
		}
		// Proxies that pass only 401 and 403 through (nginx auth_request)
		// can read the real status from here.
		h.Set("x-keygate-status", strconv.Itoa(d.Code.HTTPStatus()))
		h.Set("x-keygate-code", d.Code.String())
		body := s.bodies.appendBody(make([]byte, 0, 192), d.Code, d.Detail, d.RequestID)
		// nginx auth_request drops the body: x-keygate-error carries it, so
		// the denial can be replayed without deciding (and spending) again.
		h.Set("x-keygate-error", string(body))
		w.WriteHeader(d.Code.HTTPStatus())
		w.Write(body)
	}
	s.finish(ctx, &r, &d, start)
	if span != nil {
		endSpan(span, &d)
	}
}

// fromHTTP maps an HTTP authorization request. The original method and URI
// come from X-Forwarded-Method/-Uri (Traefik, Envoy) or X-Original-Method/
// -URI (nginx), else from the request itself with HTTPPrefix stripped
// (Envoy's http_service with path_prefix).
func (n *headerNames) fromHTTP(hr *http.Request) Request {
	r := Request{Method: hr.Method, Path: strings.TrimPrefix(hr.URL.RequestURI(), HTTPPrefix)}
	if host, _, err := net.SplitHostPort(hr.RemoteAddr); err == nil {
		r.Source = host
	}
	if r.Path == "" || r.Path[0] != '/' {
		r.Path = "/" + r.Path
	}
	if m := firstOf(hr.Header, "X-Forwarded-Method", "X-Original-Method"); m != "" {
		r.Method = m
	}
	if u := firstOf(hr.Header, "X-Forwarded-Uri", "X-Original-Uri"); u != "" {
		r.Path = u
	}
	for name, vs := range hr.Header {
		k := strings.ToLower(name)
		for _, v := range vs {
			n.header(&r, k, v, true)
		}
	}
	return r
}

func firstOf(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}
