package main

import (
	"encoding/json"
	"testing"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/testpki"
)

// TestServeMutualTLS: with tls.* set, the gRPC listener needs TLS and a
// client certificate; keygate check speaks it with --cacert/--cert/--key-file.
func TestServeMutualTLS(t *testing.T) {
	p := testpki.New(t)
	cert, key := p.Issue("server", 10, false)
	ccert, ckey := p.Issue("envoy", 20, true)
	c := newCLI(t)
	var created struct{ Key string }
	json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--scopes", "patients:read", "--json")), &created)
	c.env["KEYGATE_TLS_CERT_FILE"], c.env["KEYGATE_TLS_KEY_FILE"] = cert, key
	c.env["KEYGATE_TLS_CLIENT_CA_FILE"], c.env["KEYGATE_TLS_REQUIRE_CLIENT_CERT"] = p.CAFile(), "true"
	cfg, err := config.Load("", func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, _, _ := startServe(t, cfg)
	args := []string{"check", "--addr", grpcAddr, "--key", created.Key, "--ext", "keygate.scopes=patients:read", "--timeout", "2s"}
	waitUntil(t, 10e9, func() bool {
		_, _, code := c.run(append(args, "--cacert", p.CAFile(), "--cert", ccert, "--key-file", ckey)...)
		return code == 0
	})
	if _, errs, code := c.run(args...); code != 2 {
		t.Errorf("plaintext against TLS: exit %d %s", code, errs)
	}
	if _, errs, code := c.run(append(args, "--cacert", p.CAFile())...); code != 2 || errs == "" {
		t.Errorf("TLS without a client certificate: exit %d %s", code, errs)
	}
}
