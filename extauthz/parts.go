package extauthz

import (
	"maps"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/keys"
)

// allowParts are the parts of an allowed response that depend only on the
// key, the organization and the plan — the headers injected for the
// upstream, RateLimit-Policy and the dynamic metadata. A busy key sends the
// same ones on every request, so they are built once and shared, read-only,
// by its responses: protobuf messages may be encoded concurrently as long
// as nobody writes to them.
type allowParts struct {
	// What they were built from, compared on every use: a key whose record
	// changed (scopes, plan) gets new parts at once.
	id, tenant, org, plan string
	env                   keys.Env
	scopes                []string
	metadata              map[string]string

	upstream [6]headerOption
	opts     [6]*corev3.HeaderValueOption
	// headers are opts, then the key's metadata headers if it has any.
	headers []*corev3.HeaderValueOption
	policy  headerOption
	meta    metadataFields
	md      *structpb.Struct
}

func (p *allowParts) matches(d *Decision) bool {
	return p.id == d.Key.ID && p.tenant == d.Key.Tenant && p.org == d.Org && p.plan == d.Plan &&
		p.env == d.Key.Env && slices.Equal(p.scopes, d.Scopes) && maps.Equal(p.metadata, d.Key.Metadata)
}

func (s *Server) newAllowParts(d *Decision) *allowParts {
	h := &s.cfg.Headers
	p := &allowParts{
		id: d.Key.ID, tenant: d.Key.Tenant, org: d.Org, plan: d.Plan, env: d.Key.Env,
		scopes: slices.Clone(d.Scopes), metadata: d.Key.Metadata,
	}
	for i, hd := range [...]header{
		{h.KeyID, d.Key.ID},
		{h.Tenant, d.Key.Tenant},
		{h.OrgOut, d.Org},
		{h.Env, string(d.Key.Env)},
		{h.Scopes, strings.Join(d.Scopes, ",")},
		{h.Plan, d.Plan},
	} {
		p.opts[i] = p.upstream[i].set(hd)
	}
	p.headers = p.opts[:]
	if meta := s.appendMetadata(&d.Key, nil); len(meta) > 0 {
		p.headers = slices.Clip(p.headers)
		for _, hd := range meta {
			p.headers = append(p.headers, new(headerOption).set(hd))
		}
	}
	p.policy.set(header{"ratelimit-policy", s.lim.PolicyFor(d.Plan, d.Key.Tenant)})
	p.md = p.meta.build(d, s.codeValues[CodeOK])
	return p
}

// maxParts bounds the parts kept (about 2 KiB each, so 16 MiB at most):
// past it they are all dropped and rebuilt as keys come back, which costs
// a response's worth of work each — cheaper than any eviction bookkeeping
// on the hot path.
const maxParts = 8192

// partsCache holds allowParts by key id and organization.
type partsCache struct {
	mu sync.RWMutex
	m  map[partsKey]*allowParts
}

type partsKey struct{ id, org string }

func (c *partsCache) get(s *Server, d *Decision) *allowParts {
	k := partsKey{d.Key.ID, d.Org}
	c.mu.RLock()
	p := c.m[k]
	c.mu.RUnlock()
	if p != nil && p.matches(d) {
		return p
	}
	p = s.newAllowParts(d)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxParts {
		c.m = make(map[partsKey]*allowParts)
	}
	c.m[k] = p
	c.mu.Unlock()
	return p
}
