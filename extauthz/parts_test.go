package extauthz

import (
	"context"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/keys"
)

func headerValues(opts []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}

// TestSharedPartsFollowTheRecord: the parts an allowed response shares
// with the key's earlier ones are rebuilt as soon as the record they came
// from changes — scopes, plan, tenant — so no response carries stale ones.
func TestSharedPartsFollowTheRecord(t *testing.T) {
	s, k := benchServer(t)
	recs := s.keys.(memKeys).recs
	h := keys.NewHasher(nil).Sum(k.allowed)
	check := func() (up, client map[string]string, md map[string]string) {
		t.Helper()
		resp, err := s.Check(context.Background(), benchReq("Bearer "+k.allowed))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("not allowed: %v %v", resp.GetStatus(), err)
		}
		md = map[string]string{}
		for name, v := range resp.GetDynamicMetadata().GetFields() {
			md[name] = v.GetStringValue()
		}
		return headerValues(resp.GetOkResponse().GetHeaders()), headerValues(resp.GetOkResponse().GetResponseHeadersToAdd()), md
	}
	steps := []struct {
		name   string
		change func(*keys.Record)
		want   map[string]string // upstream headers
		policy string
	}{
		{"first", func(*keys.Record) {}, map[string]string{"x-keygate-scopes": "patients:read", "x-keygate-plan": "live", "x-keygate-tenant": "acme"}, `"1h";q=1073741824;w=3600`},
		{"same again", func(*keys.Record) {}, map[string]string{"x-keygate-scopes": "patients:read", "x-keygate-plan": "live"}, `"1h";q=1073741824;w=3600`},
		{"scopes", func(r *keys.Record) { r.Scopes = []string{"patients:read", "forms:read"} }, map[string]string{"x-keygate-scopes": "patients:read,forms:read"}, `"1h";q=1073741824;w=3600`},
		{"plan", func(r *keys.Record) { r.Plan = "huge" }, map[string]string{"x-keygate-plan": "huge"}, `"24h";q=1073741824;w=86400`},
		{"tenant", func(r *keys.Record) { r.Tenant = "beta" }, map[string]string{"x-keygate-tenant": "beta", "x-keygate-org": "beta"}, `"24h";q=1073741824;w=86400`},
	}
	for _, st := range steps {
		r := recs[h]
		st.change(&r)
		recs[h] = r
		up, client, md := check()
		for name, v := range st.want {
			if up[name] != v {
				t.Errorf("%s: %s = %q, want %q", st.name, name, up[name], v)
			}
		}
		if client["ratelimit-policy"] != st.policy {
			t.Errorf("%s: RateLimit-Policy %q, want %q", st.name, client["ratelimit-policy"], st.policy)
		}
		if md["tenant"] != up["x-keygate-tenant"] || md["org"] != up["x-keygate-org"] || md["key_id"] != up["x-keygate-key-id"] {
			t.Errorf("%s: dynamic metadata %v disagrees with the headers %v", st.name, md, up)
		}
	}
}

// TestSharedPartsConcurrently encodes responses that share parts from many
// goroutines at once, as gRPC does (run with -race), while other keys
// overflow the parts cache and force it to start over.
func TestSharedPartsConcurrently(t *testing.T) {
	s, k := benchServer(t)
	recs := s.keys.(memKeys).recs
	hasher := keys.NewHasher(nil)
	churn := make([]string, maxParts+100)
	for i := range churn {
		churn[i] = newKey(t)
		r := recs[hasher.Sum(k.allowed)]
		r.ID, r.Hash, r.Lineage = "churn_"+churn[i][8:20], hasher.Sum(churn[i]), "churn"
		recs[r.Hash] = r
	}
	c := codec{fallback: encoding.GetCodecV2("proto")}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				key := k.allowed
				if g%2 == 1 {
					key = churn[(g*300+i)%len(churn)]
				}
				resp, err := s.Check(context.Background(), benchReq("Bearer "+key))
				if err != nil || resp.GetOkResponse() == nil {
					t.Errorf("not allowed: %v %v", resp.GetStatus(), err)
					return
				}
				out, err := c.Marshal(resp)
				if err != nil {
					t.Error(err)
					return
				}
				var back authv3.CheckResponse
				if err := proto.Unmarshal(out.Materialize(), &back); err != nil || !proto.Equal(&back, resp) {
					t.Errorf("response did not survive encoding: %v", err)
				}
				out.Free()
			}
		}()
	}
	// One goroutine fills the cache past its bound on its own.
	for _, key := range churn {
		if _, err := s.Check(context.Background(), benchReq("Bearer "+key)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	s.parts.mu.RLock()
	n := len(s.parts.m)
	s.parts.mu.RUnlock()
	if n > maxParts {
		t.Fatalf("%d parts held, more than the bound %d", n, maxParts)
	}
}
