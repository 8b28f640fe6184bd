package extauthz

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Code is the outcome of a Check: OK or one row of the documented denial
// table. Its name doubles as the metric label and the error body's code.
type Code uint8

// The outcomes, in the order docs/design.md lists them.
const (
	CodeOK Code = iota
	CodeMissingAPIKey
	CodeMalformedAuthorization
	CodeInvalidAPIKey
	CodeAPIKeyExpired
	CodeAPIKeyRevoked
	CodeMissingOrganization
	CodeInvalidOrganization
	CodeOrganizationForbidden
	CodeInsufficientScope
	// CodeIPNotAllowed: the key has allowed networks and the client
	// address is in none of them.
	CodeIPNotAllowed
	CodeRouteNotFound
	CodeRateLimited
	CodeUnavailable
	// CodeIntrospection: the request was for the introspection route and
	// Keygate answered it itself (200 with the key's description).
	CodeIntrospection
	numCodes
)

type codeInfo struct {
	name    string
	status  int
	grpc    codes.Code
	errType string
	message string
}

var codeTable = [numCodes]codeInfo{
	CodeOK:                     {"ok", http.StatusOK, codes.OK, "", ""},
	CodeMissingAPIKey:          {"missing_api_key", http.StatusUnauthorized, codes.Unauthenticated, "authentication_error", "No API key provided. Send it as: Authorization: Bearer <key>"},
	CodeMalformedAuthorization: {"malformed_authorization", http.StatusUnauthorized, codes.Unauthenticated, "authentication_error", "Malformed Authorization header. Expected: Bearer <key>"},
	CodeInvalidAPIKey:          {"invalid_api_key", http.StatusUnauthorized, codes.Unauthenticated, "authentication_error", "Invalid API key"},
	CodeAPIKeyExpired:          {"api_key_expired", http.StatusUnauthorized, codes.Unauthenticated, "authentication_error", "API key has expired"},
	CodeAPIKeyRevoked:          {"api_key_revoked", http.StatusUnauthorized, codes.Unauthenticated, "authentication_error", "API key has been revoked"},
	CodeMissingOrganization:    {"missing_organization", http.StatusBadRequest, codes.InvalidArgument, "invalid_request_error", "Missing organization header"},
	CodeInvalidOrganization:    {"invalid_organization", http.StatusBadRequest, codes.InvalidArgument, "invalid_request_error", "Invalid organization id"},
	CodeOrganizationForbidden:  {"organization_forbidden", http.StatusForbidden, codes.PermissionDenied, "permission_error", "API key has no access to this organization"},
	CodeInsufficientScope:      {"insufficient_scope", http.StatusForbidden, codes.PermissionDenied, "permission_error", "Insufficient scope. Required: "},
	CodeIPNotAllowed:           {"ip_not_allowed", http.StatusForbidden, codes.PermissionDenied, "permission_error", "API key is not allowed from this IP address"},
	CodeRouteNotFound:          {"route_not_found", http.StatusNotFound, codes.NotFound, "invalid_request_error", "No route matches this request"},
	CodeRateLimited:            {"rate_limited", http.StatusTooManyRequests, codes.ResourceExhausted, "rate_limit_error", "Rate limit exceeded"},
	CodeUnavailable:            {"unavailable", http.StatusServiceUnavailable, codes.Unavailable, "api_error", "Service temporarily unavailable, retry later"},
	// Envoy uses the denied response only for a non-OK status: Aborted
	// says "answered here, not forwarded", with HTTP 200.
	CodeIntrospection: {"introspection", http.StatusOK, codes.Aborted, "", ""},
}

// String returns the code's stable name, e.g. "insufficient_scope".
func (c Code) String() string {
	if c >= numCodes {
		return "unknown"
	}
	return codeTable[c].name
}

// HTTPStatus is the status the client sees.
func (c Code) HTTPStatus() int { return codeTable[c].status }

// GRPC is the google.rpc code carried in CheckResponse.status.
func (c Code) GRPC() codes.Code { return codeTable[c].grpc }

// Codes lists every outcome, for metrics that pre-create their series.
func Codes() []Code {
	out := make([]Code, numCodes)
	for i := range out {
		out[i] = Code(i)
	}
	return out
}
