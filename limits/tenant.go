package limits

import (
	"github.com/go-redis/redis_rate/v10"
)

// newPlan prepares a validated plan: its Redis arguments, its
// RateLimit-Policy and, when some windows are per tenant, its parts.
func newPlan(name string, ws []Window) *plan {
	p := &plan{name: name, windows: append([]Window(nil), ws...), policy: PolicyHeader(ws)}
	for _, w := range ws {
		p.args = append(p.args, newGCRAArgs(redis_rate.Limit{Rate: w.Limit, Burst: w.Limit, Period: w.Period}))
		p.tenant = p.tenant || w.Tenant()
	}
	if p.tenant {
		p.keyPart, p.tenantPart = p.part(false), p.part(true)
	}
	return p
}

// part is the plan of p's per-tenant windows, or of its per-key ones (nil
// if it has none), for the in-process limiter, whose buckets hold one
// part each.
func (p *plan) part(tenant bool) *plan {
	q := &plan{name: p.name}
	for i, w := range p.windows {
		if w.Tenant() == tenant {
			q.windows, q.args, q.idx = append(q.windows, w), append(q.args, p.args[i]), append(q.idx, i)
		}
	}
	if len(q.windows) == 0 {
		return nil
	}
	return q
}

// tenantBucket names a tenant's bucket for a plan: a Redis hash tag of its
// own (a tenant's buckets share a Cluster slot with nothing else), never
// the name of a key's bucket, which has no braces.
func tenantBucket(tenant, plan string) string {
	return "{t:" + tenant + "}:" + plan
}

// allowPlan spends one request of p in process: in bucket for its per-key
// windows and in tb for its per-tenant ones, all or none. A plan without
// per-tenant windows takes the single-bucket path it always took.
func (l *local) allowPlan(bucket, tb string, p *plan) Result {
	if !p.tenant {
		return l.allow(bucket, p)
	}
	var kr Result
	var kb *localBucket
	if p.keyPart != nil {
		var ok bool
		if kr, kb, ok = l.spendIn(bucket, p.keyPart); !ok {
			return kr
		}
	}
	tr, _, ok := l.spendIn(tb, p.tenantPart)
	if !ok {
		// The key's windows were spent: give them back, so a denial
		// spends nothing.
		if kb != nil {
			kb.refund(p.keyPart, len(p.keyPart.windows))
		}
		return tr
	}
	states := make([]WindowState, len(p.windows))
	for i, s := range kr.Windows {
		states[p.keyPart.idx[i]] = s
	}
	for i, s := range tr.Windows {
		states[p.tenantPart.idx[i]] = s
	}
	return tightest(states)
}

// spendIn is allow that also returns the bucket spent in.
func (l *local) spendIn(bucket string, p *plan) (Result, *localBucket, bool) {
	now := l.now().UnixNano()
	sh := l.shard(bucket)
	for {
		b := sh.get(bucket, p, now, l.sweepEvery)
		r, spent := b.spend(p, now)
		if !spent || !b.dead.Load() {
			return r, b, spent
		}
		b.refund(p, len(p.windows))
	}
}
