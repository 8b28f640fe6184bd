package admin

import (
	"context"
	"time"

	"github.com/keygate/keygate/store"
)

// UsageQuery selects usage buckets: those from the one Since falls in to
// the last one that starts before Until. A zero Since is
// DefaultUsageWindow before Until, a zero Until now; Granularity is
// "hour" (the default) or "day" (UTC days).
type UsageQuery struct {
	Since, Until time.Time
	Granularity  string // "hour" | "day"
}

// UsageBucket is one hour's or day's decisions.
type UsageBucket struct {
	Start       time.Time `json:"start"`
	Allowed     int64     `json:"allowed"`
	RateLimited int64     `json:"rate_limited"`
	Denied      int64     `json:"denied"`
}

// UsageView is a key's or a tenant's usage: every bucket of the range, in
// order, those without decisions included (with zero counts), so that a
// chart or a sparkline needs no gaps filled.
type UsageView struct {
	KeyID       string        `json:"key_id,omitempty"`
	Tenant      string        `json:"tenant,omitempty"`
	Granularity string        `json:"granularity"`
	Buckets     []UsageBucket `json:"buckets"`
}

// Usage ranges.
const (
	// DefaultUsageWindow is the range of a query without a since.
	DefaultUsageWindow = 7 * 24 * time.Hour
	// MaxUsageWindow bounds a query's range: a year of hours is 8,784
	// buckets.
	MaxUsageWindow = 366 * 24 * time.Hour
)

// KeyUsage returns key id's usage. A key of a tenant the caller may not
// see is not found, as a key that does not exist.
func (s *Service) KeyUsage(ctx context.Context, id string, q UsageQuery) (UsageView, error) {
	rec, err := s.key(ctx, id, PermUsageRead, "read usage")
	if err != nil {
		return UsageView{}, err
	}
	return s.usage(ctx, store.UsageFilter{KeyID: rec.ID}, q)
}

// TenantUsage returns tenant's usage, summed over its keys. A tenant
// without keys, or whose keys were never used, has zero counts; a tenant
// the caller may not see (a portal session's other tenants) is not found.
func (s *Service) TenantUsage(ctx context.Context, tenant string, q UsageQuery) (UsageView, error) {
	if _, err := allow(ctx, PermUsageRead, "read usage"); err != nil {
		return UsageView{}, err
	}
	if !tenantRE.MatchString(tenant) {
		return UsageView{}, invalid("tenant", "%q must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit", tenant)
	}
	if _, err := allowTenant(ctx, PermUsageRead, "read usage", tenant, "tenant "+tenant); err != nil {
		return UsageView{}, err
	}
	return s.usage(ctx, store.UsageFilter{Tenant: tenant}, q)
}

// usage runs f over q's range and fills in the buckets without counts.
func (s *Service) usage(ctx context.Context, f store.UsageFilter, q UsageQuery) (UsageView, error) {
	step := time.Hour
	switch q.Granularity {
	case "", store.GranularityHour:
		q.Granularity = store.GranularityHour
	case store.GranularityDay:
		step = 24 * time.Hour
	default:
		return UsageView{}, invalid("granularity", "%q is not hour or day", q.Granularity)
	}
	if q.Until.IsZero() {
		q.Until = s.cfg.Now()
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-DefaultUsageWindow)
	}
	switch {
	case !q.Since.Before(q.Until):
		return UsageView{}, invalid("since", "%s is not before until (%s)", q.Since.UTC().Format(time.RFC3339), q.Until.UTC().Format(time.RFC3339))
	case q.Until.Sub(q.Since) > MaxUsageWindow:
		return UsageView{}, invalid("since", "the range from since to until is longer than %d days", MaxUsageWindow/(24*time.Hour))
	}
	f.Since, f.Until, f.Granularity = q.Since, q.Until, q.Granularity
	counts, err := s.db.Usage(ctx, f)
	if err != nil {
		return UsageView{}, err
	}
	byStart := make(map[int64]store.UsageCount, len(counts))
	for _, c := range counts {
		byStart[c.Start.Unix()] = c
	}
	v := UsageView{KeyID: f.KeyID, Tenant: f.Tenant, Granularity: q.Granularity, Buckets: []UsageBucket{}}
	for start := q.Since.UTC().Truncate(step); start.Before(q.Until); start = start.Add(step) {
		c := byStart[start.Unix()]
		v.Buckets = append(v.Buckets, UsageBucket{Start: start, Allowed: c.Allowed, RateLimited: c.RateLimited, Denied: c.Denied})
	}
	return v, nil
}
