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

// RateHeaders returns the rate-limit response headers for d, allowed or
// limited: the IETF draft's RateLimit-Policy and RateLimit, and the common
// X-RateLimit-* trio (Reset in seconds from now, like RateLimit's t).
func (s *Server) rateHeaders(d *Decision, out []header) []header {
	if d.Rate == nil {
		return out
	}
	r := d.Rate
	out = append(out,
		header{"ratelimit-policy", s.lim.PolicyOf(d.Plan)},
		header{"x-ratelimit-limit", strconv.Itoa(r.Limit)},
	)
	if r.Unknown {
		return out // Redis down with on_redis_error: open: no state to report
	}
	out = append(out,
		header{"ratelimit", limits.StateHeader(*r)},
		header{"x-ratelimit-remaining", strconv.Itoa(r.Remaining)},
		header{"x-ratelimit-reset", strconv.FormatInt(limits.CeilSeconds(r.Reset), 10)},
	)
	return out
}

// responseHeaders returns what the client gets besides the status: rate
// state, and on a rolled key in its grace period Deprecation (RFC 9745) and
// Sunset (RFC 8594), so callers learn to switch before it stops working.
func (s *Server) responseHeaders(d *Decision) []header {
	out := make([]header, 0, 8)
	out = s.rateHeaders(d, out)
	if k := d.Key; d.Code == CodeOK && k != nil && !k.RolledAt.IsZero() {
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

// upstreamHeaders are the headers injected for the upstream on allow.
func (s *Server) upstreamHeaders(d *Decision) []header {
	h := &s.cfg.Headers
	return []header{
		{h.KeyID, d.Key.ID},
		{h.Tenant, d.Key.Tenant},
		{h.OrgOut, d.Org},
		{h.Env, string(d.Key.Env)},
		{h.Scopes, strings.Join(d.Scopes, ",")},
		{h.Plan, d.Plan},
	}
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

// toCheckResponse renders a Decision for Envoy.
func (s *Server) toCheckResponse(d *Decision) *authv3.CheckResponse {
	md := s.metadata(d)
	if d.Code == CodeOK {
		// One allocation for the response and its fixed parts.
		r := &okResponse{}
		r.http.Headers = options(s.upstreamHeaders(d))
		r.http.HeadersToRemove = s.removedHeaders(d)
		r.http.ResponseHeadersToAdd = options(s.responseHeaders(d))
		r.oneof.OkResponse = &r.http
		r.resp.Status = &r.status
		r.resp.HttpResponse = &r.oneof
		r.resp.DynamicMetadata = md
		return &r.resp
	}
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

// okResponse holds an allowed CheckResponse and the messages it points to,
// so that building one costs a single allocation.
type okResponse struct {
	resp   authv3.CheckResponse
	oneof  authv3.CheckResponse_OkResponse
	http   authv3.OkHttpResponse
	status status.Status
}

// headerOption is a HeaderValueOption with its HeaderValue beside it.
type headerOption struct {
	opt corev3.HeaderValueOption
	val corev3.HeaderValue
}

// options turns headers into HeaderValueOptions that replace any copy the
// client sent: append_action's zero value would append instead.
func options(hs []header) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, len(hs))
	backing := make([]headerOption, len(hs))
	for i, h := range hs {
		b := &backing[i]
		b.val.Key, b.val.Value = h.key, h.value
		b.opt.Header = &b.val
		b.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &b.opt
	}
	return out
}

// metadata is what Envoy's access log can print of the decision, under the
// ext_authz filter's namespace: key id, tenant, org and env on allow (kept
// small: the map is encoded by reflection on every Check), and the code on
// a denial.
func (s *Server) metadata(d *Decision) *structpb.Struct {
	f := make(map[string]*structpb.Value, 5)
	if d.Code != CodeOK {
		f["code"] = s.codeValues[d.Code]
	}
	if d.Key != nil {
		// The string values share two allocations instead of two each.
		vals := make([]structpb.Value, 4)
		kinds := make([]structpb.Value_StringValue, 4)
		set := func(i int, k, v string) {
			kinds[i].StringValue = v
			vals[i].Kind = &kinds[i]
			f[k] = &vals[i]
		}
		set(0, "key_id", d.Key.ID)
		set(1, "tenant", d.Key.Tenant)
		set(2, "env", string(d.Key.Env))
		if d.Org != "" {
			set(3, "org", d.Org)
		}
	}
	return &structpb.Struct{Fields: f}
}
