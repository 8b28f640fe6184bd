package extauthz

import (
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/limits"
)

// wwwAuth holds the WWW-Authenticate values of RFC 6750, rendered once.
type wwwAuth struct {
	none, invalidRequest string
	invalidToken         [numCodes]string
}

func newWWWAuth(realm string) wwwAuth {
	w := wwwAuth{
		none:           `Bearer realm="` + realm + `"`,
		invalidRequest: `Bearer realm="` + realm + `", error="invalid_request", error_description="Authorization must be Bearer <key>"`,
	}
	for _, c := range []Code{CodeInvalidAPIKey, CodeAPIKeyExpired, CodeAPIKeyRevoked} {
		w.invalidToken[c] = `Bearer realm="` + realm + `", error="invalid_token", error_description="` + codeTable[c].message + `"`
	}
	return w
}

func (w *wwwAuth) value(d *Decision) string {
	switch d.Code {
	case CodeMissingAPIKey:
		return w.none
	case CodeMalformedAuthorization:
		return w.invalidRequest
	}
	if v := w.invalidToken[d.Code]; v != "" {
		return v
	}
	return w.none
}

// header is one header to set; the slice forms are rendered by transports.
type header struct{ key, value string }

// rateHeaders appends the rate-limit response headers for d, allowed or
// limited: the IETF draft's RateLimit-Policy and RateLimit, and the common
// X-RateLimit-* trio (Reset in seconds from now, like RateLimit's t).
func (s *Server) rateHeaders(d *Decision, out []header) []header {
	if !d.HasRate {
		return out
	}
	return rateNumbers(d, append(out, header{"ratelimit-policy", s.lim.PolicyFor(d.Plan, d.Key.Tenant)}))
}

// rateNumbers appends the rate-limit headers that change with every request.
// The numbers share one string: one allocation for all of them.
func rateNumbers(d *Decision, out []header) []header {
	if !d.HasRate {
		return out
	}
	r := &d.Rate
	var buf [160]byte
	b := strconv.AppendInt(buf[:0], int64(r.Limit), 10)
	endLimit := len(b)
	if r.Unknown {
		// Redis down with on_redis_error: open: no state to report.
		return append(out, header{"x-ratelimit-limit", string(b)})
	}
	b = strconv.AppendInt(b, int64(r.Remaining), 10)
	endRemaining := len(b)
	b = strconv.AppendInt(b, limits.CeilSeconds(r.Reset), 10)
	endReset := len(b)
	b = limits.AppendState(b, *r, d.Key.Tenant)
	all := string(b)
	return append(out,
		header{"x-ratelimit-limit", all[:endLimit]},
		header{"ratelimit", all[endReset:]},
		header{"x-ratelimit-remaining", all[endLimit:endRemaining]},
		header{"x-ratelimit-reset", all[endRemaining:endReset]},
	)
}

// responseHeaders appends what the client gets besides the status: rate
// state and rolled-key notices.
func (s *Server) responseHeaders(d *Decision, out []header) []header {
	return rolledHeaders(d, s.rateHeaders(d, out))
}

// rolledHeaders appends, on a rolled key in its grace period, Deprecation
// (RFC 9745) and Sunset (RFC 8594), so callers learn to switch before it
// stops working.
func rolledHeaders(d *Decision, out []header) []header {
	if k := &d.Key; d.Code == CodeOK && d.HasKey && !k.RolledAt.IsZero() {
		out = append(out, header{"deprecation", "@" + strconv.FormatInt(k.RolledAt.Unix(), 10)})
		if !k.ExpiresAt.IsZero() {
			out = append(out, header{"sunset", k.ExpiresAt.UTC().Format(time.RFC1123[:len(time.RFC1123)-3] + "GMT")})
		}
	}
	return out
}

// deniedHeaders are the headers of a denial.
func (s *Server) deniedHeaders(d *Decision) []header {
	out := make([]header, 0, 9)
	out = append(out, header{"content-type", "application/json"})
	if d.Code.HTTPStatus() == 401 {
		out = append(out, header{"www-authenticate", s.www.value(d)})
	}
	if d.RetryAfter > 0 {
		out = append(out, header{"retry-after", strconv.FormatInt(max(1, ceilSeconds(d.RetryAfter)), 10)})
	}
	return s.rateHeaders(d, out)
}

// upstreamHeaders appends the headers injected for the upstream on allow.
func (s *Server) upstreamHeaders(d *Decision, out []header) []header {
	h := &s.cfg.Headers
	return s.appendMetadata(&d.Key, append(out,
		header{h.KeyID, d.Key.ID},
		header{h.Tenant, d.Key.Tenant},
		header{h.OrgOut, d.Org},
		header{h.Env, string(d.Key.Env)},
		header{h.Scopes, strings.Join(d.Scopes, ",")},
		header{h.Plan, d.Plan},
	))
}

// removedHeaders are the request headers Envoy drops before the upstream.
func (s *Server) removedHeaders(d *Decision) []string {
	out := make([]string, 0, 1+len(d.Strip))
	out = append(out, s.cfg.Headers.Auth)
	return append(out, d.Strip...)
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// toCheckResponse renders a Decision for Envoy as a message on its own.
func (s *Server) toCheckResponse(d *Decision) *authv3.CheckResponse {
	if d.Code == CodeOK {
		r := s.okResponse(d)
		r.resp.DynamicMetadata = r.parts.meta.withRequestID(d.RequestID)
		return &r.resp
	}
	return s.deniedResponse(d)
}

// toWire renders a Decision for Keygate's own codec: an allowed response
// shares its key's metadata and carries the request id apart (okWire), so
// that it costs no allocation of its own; anything else is a message.
func (s *Server) toWire(d *Decision) any {
	if d.Code == CodeOK && fastEncoding {
		r := s.okResponse(d)
		if m, ok := any(&r.resp).(vtMarshaler); ok {
			r.wire = okWire{resp: m, requestID: d.RequestID}
			return &r.wire
		}
	}
	return s.toCheckResponse(d)
}

func (s *Server) deniedResponse(d *Decision) *authv3.CheckResponse {
	md := new(metadataFields).build(d, s.codeValues[d.Code])
	info := &codeTable[d.Code]
	if d.Code == CodeIntrospection {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(info.grpc), Message: info.name},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_OK},
				Headers: options(s.introspectionHeaders(d)),
				Body:    string(s.introspectionBody(d)),
			}},
			DynamicMetadata: md,
		}
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(info.grpc), Message: info.name},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(info.status)},
			Headers: options(s.deniedHeaders(d)),
			Body:    string(s.bodies.appendBody(make([]byte, 0, 192), d.Code, d.Detail, d.RequestID)),
		}},
		DynamicMetadata: md,
	}
}

// maxOKHeaders is how many response headers an allowed response holds
// for itself: the four rate-limit headers that change with every request.
// RateLimit-Policy and the upstream headers come from its allowParts; a
// rolled key's Deprecation and Sunset, rare, are allocated apart, so that
// every other response is that much smaller.
const maxOKHeaders = 4

// okResponse holds an allowed CheckResponse and the messages it points to,
// so that building one costs a single allocation besides the string of
// rate-limit numbers. Allowed Checks are the bulk of the traffic; this is
// their whole response.
type okResponse struct {
	resp   authv3.CheckResponse
	parts  *allowParts
	wire   okWire
	oneof  authv3.CheckResponse_OkResponse
	http   authv3.OkHttpResponse
	status status.Status
	opts   [1 + maxOKHeaders]*corev3.HeaderValueOption
	hdrs   [maxOKHeaders]headerOption
	remove [1]string
}

func (s *Server) okResponse(d *Decision) *okResponse {
	p := s.parts.get(s, d)
	r := &okResponse{parts: p}
	var buf [maxOKHeaders]header
	hs := rolledHeaders(d, rateNumbers(d, buf[:0]))
	opts := r.opts[:0]
	if d.HasRate {
		opts = append(opts, &p.policy.opt)
	}
	for i, h := range hs {
		if i < maxOKHeaders {
			opts = append(opts, r.hdrs[i].set(h))
		} else {
			opts = append(opts, new(headerOption).set(h))
		}
	}
	r.http.Headers = p.headers
	r.http.ResponseHeadersToAdd = opts
	if len(d.Strip) == 0 {
		r.remove[0] = s.cfg.Headers.Auth
		r.http.HeadersToRemove = r.remove[:]
	} else {
		r.http.HeadersToRemove = s.removedHeaders(d)
	}
	r.oneof.OkResponse = &r.http
	r.resp.Status = &r.status
	r.resp.HttpResponse = &r.oneof
	r.resp.DynamicMetadata = p.md
	return r
}

// headerOption is a HeaderValueOption with its HeaderValue beside it.
type headerOption struct {
	opt corev3.HeaderValueOption
	val corev3.HeaderValue
}

// set fills o with h, replacing any copy the client sent: append_action's
// zero value would append instead.
func (o *headerOption) set(h header) *corev3.HeaderValueOption {
	o.val.Key, o.val.Value = h.key, h.value
	o.opt.Header = &o.val
	o.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return &o.opt
}

// options turns headers into HeaderValueOptions.
func options(hs []header) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, len(hs))
	backing := make([]headerOption, len(hs))
	for i, h := range hs {
		out[i] = backing[i].set(h)
	}
	return out
}

// metadataFields is the dynamic metadata of one response with its values
// beside it, so that it costs one allocation besides its map.
type metadataFields struct {
	s     structpb.Struct
	vals  [5]structpb.Value
	kinds [5]structpb.Value_StringValue
}

// Dynamic metadata keys, under the ext_authz filter's namespace, for
// Envoy's access log (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:key_id)%).
const (
	mdCode      = "code"
	mdRequestID = "request_id"
)

// build returns what Envoy's access log can print of the decision: the
// decision's code (a shared read-only value), the request id, and key id,
// tenant, org and env once the key is known (kept small: the map is
// encoded on every Check). An allowed key's metadata is built once and
// shared, without the request id, which okWire or withRequestID adds.
func (m *metadataFields) build(d *Decision, code *structpb.Value) *structpb.Struct {
	f := make(map[string]*structpb.Value, 6)
	f[mdCode] = code
	n := 0
	set := func(k, v string) {
		m.kinds[n].StringValue = v
		m.vals[n].Kind = &m.kinds[n]
		f[k] = &m.vals[n]
		n++
	}
	if d.Code != CodeOK {
		set(mdRequestID, d.RequestID)
	}
	if d.HasKey {
		set("key_id", d.Key.ID)
		set("tenant", d.Key.Tenant)
		set("env", string(d.Key.Env))
		if d.Org != "" {
			set("org", d.Org)
		}
	}
	m.s.Fields = f
	return &m.s
}

// withRequestID returns a copy of the shared metadata m holds with the
// request id added, for a response that is a message on its own.
func (m *metadataFields) withRequestID(id string) *structpb.Struct {
	f := make(map[string]*structpb.Value, len(m.s.Fields)+1)
	for k, v := range m.s.Fields {
		f[k] = v
	}
	f[mdRequestID] = structpb.NewStringValue(id)
	return &structpb.Struct{Fields: f}
}
