package extauthz_test

import (
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
)

// fromAddr sets the downstream address Envoy reports.
func fromAddr(r *authv3.CheckRequest, addr string) *authv3.CheckRequest {
	r.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}}
	return r
}

func guess() string {
	k, _ := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
	return k
}

func TestBruteForceIsLimitedPerAddress(t *testing.T) {
	failures, err := limits.NewFailures(limits.Window{Limit: 5, Period: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(failures.Close)
	e := newEnv(t, envOpts{routes: testRoutes, failures: failures})
	valid := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}}).Key
	okResponse(t, e.check(fromAddr(req("GET", "/api/v1/patients", bearer(valid), nil), "203.0.113.7"))) // now in memory

	for range 5 {
		wantDeniedCode(t, e.check(fromAddr(req("GET", "/api/v1/patients", bearer(guess()), nil), "203.0.113.7")), "invalid_api_key")
	}
	misses := e.cache.Stats().Misses
	// Over the limit: guesses get 429 before any database lookup, however
	// well-formed, and with a Retry-After.
	for range 20 {
		_, h := wantDenied(t, e.check(fromAddr(req("GET", "/api/v1/patients", bearer(guess()), nil), "203.0.113.7")), 429, "rate_limited", codes.ResourceExhausted)
		if ra, _ := strconv.Atoi(h["retry-after"]); ra < 1 {
			t.Fatalf("Retry-After %q", h["retry-after"])
		}
	}
	if got := e.cache.Stats().Misses; got != misses {
		t.Fatalf("a blocked address caused %d database lookups", got-misses)
	}
	// A valid key from the same address is not locked out by the guessing.
	okResponse(t, e.check(fromAddr(req("GET", "/api/v1/patients", bearer(valid), nil), "203.0.113.7")))
	// Another address is not affected.
	wantDeniedCode(t, e.check(fromAddr(req("GET", "/api/v1/patients", bearer(guess()), nil), "198.51.100.1")), "invalid_api_key")
}

func TestBruteForceBehindTrustedProxy(t *testing.T) {
	failures, err := limits.NewFailures(limits.Window{Limit: 2, Period: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(failures.Close)
	e := newEnv(t, envOpts{routes: testRoutes, failures: failures, trustedHops: 1})
	// Everyone arrives from the load balancer 10.0.0.1, which appends the
	// client to X-Forwarded-For; a client-written entry to its left is not
	// trusted.
	from := func(client string) *authv3.CheckRequest {
		return fromAddr(req("GET", "/api/v1/patients", with(bearer(guess()), "x-forwarded-for", "6.6.6.6, "+client), nil), "10.0.0.1")
	}
	for range 2 {
		wantDeniedCode(t, e.check(from("192.0.2.10")), "invalid_api_key")
	}
	wantDeniedCode(t, e.check(from("192.0.2.10")), "rate_limited")
	wantDeniedCode(t, e.check(from("192.0.2.11")), "invalid_api_key")
}
