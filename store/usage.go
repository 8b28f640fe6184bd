package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// UsageCount is one key's decisions in one bucket: an hour as recorded
// and added, an hour or a day (UTC) as read. A tenant's usage has no
// KeyID.
type UsageCount struct {
	KeyID  string
	Tenant string
	// Start is the bucket's first instant, in UTC.
	Start                        time.Time
	Allowed, RateLimited, Denied int64
}

// Usage granularities.
const (
	GranularityHour = "hour"
	GranularityDay  = "day"
)

// UsageFilter selects one key's usage (KeyID) or a tenant's, summed over
// its keys (Tenant): the hours from the one Since falls in to the last one
// that starts before Until (zero Until: no end), in buckets of an hour or
// a UTC day (Granularity; "" is hour). A day's bucket sums the hours
// selected, so the first and last days may be partial.
type UsageFilter struct {
	KeyID, Tenant string
	Since, Until  time.Time
	Granularity   string
}

// UsageHour is the start of the hour t falls in, in UTC: the bucket a
// decision at t is counted in.
func UsageHour(t time.Time) time.Time { return time.Unix(floorTo(t.Unix(), 3600), 0).UTC() }

// floorTo rounds s down to a multiple of step (also for times before 1970).
func floorTo(s, step int64) int64 {
	r := s % step
	if r < 0 {
		r += step
	}
	return s - r
}

// key_usage keeps an hour as the Unix seconds of its start, in both
// dialects, so that a day's bucket is integer arithmetic on it. An upsert
// adds to what another replica (or an earlier flush) wrote for the same
// key and hour.
const (
	usageAdd = `INSERT INTO key_usage (key_id, hour, tenant, allowed, rate_limited, denied)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (key_id, hour) DO UPDATE SET
	allowed = key_usage.allowed + excluded.allowed,
	rate_limited = key_usage.rate_limited + excluded.rate_limited,
	denied = key_usage.denied + excluded.denied`
	// pgUsageAdd is usageAdd for a whole batch in one statement: each
	// column an array, unnested into rows. Rows come sorted by (key_id,
	// hour), so that two replicas upserting overlapping batches lock rows
	// in the same order and cannot deadlock.
	pgUsageAdd = `INSERT INTO key_usage (key_id, hour, tenant, allowed, rate_limited, denied)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
ON CONFLICT (key_id, hour) DO UPDATE SET
	allowed = key_usage.allowed + excluded.allowed,
	rate_limited = key_usage.rate_limited + excluded.rate_limited,
	denied = key_usage.denied + excluded.denied`
	stmtPruneUsage = `DELETE FROM key_usage WHERE hour < $1`
)

// usageQuery is the statement of f: rows of (bucket start, allowed,
// rate_limited, denied) in bucket order, with its arguments. Both
// indexes, (key_id, hour) and (tenant, hour), serve the range.
func usageQuery(f UsageFilter) (string, []any, error) {
	step := int64(3600)
	switch f.Granularity {
	case "", GranularityHour:
	case GranularityDay:
		step = 86400
	default:
		return "", nil, fmt.Errorf("usage granularity %q is not hour or day", f.Granularity)
	}
	if (f.KeyID == "") == (f.Tenant == "") {
		return "", nil, errors.New("usage: give exactly one of a key id and a tenant")
	}
	col, arg := "key_id", f.KeyID
	if f.KeyID == "" {
		col, arg = "tenant", f.Tenant
	}
	until := int64(1) << 62
	if !f.Until.IsZero() {
		until = f.Until.Unix()
		if f.Until.Nanosecond() > 0 {
			until++ // an hour that starts within Until's second starts before it
		}
	}
	q := fmt.Sprintf(`SELECT (hour / %[1]d) * %[1]d AS start,
	CAST(sum(allowed) AS BIGINT), CAST(sum(rate_limited) AS BIGINT), CAST(sum(denied) AS BIGINT)
FROM key_usage WHERE %[2]s = $1 AND hour >= $2 AND hour < $3
GROUP BY 1 ORDER BY 1`, step, col)
	return q, []any{arg, UsageHour(f.Since).Unix(), until}, nil
}

// usageRows reads usageQuery's rows as f's buckets.
func usageRows(f UsageFilter, next func() bool, scan func(dest ...any) error) ([]UsageCount, error) {
	out := []UsageCount{}
	for next() {
		c := UsageCount{KeyID: f.KeyID, Tenant: f.Tenant}
		var start int64
		if err := scan(&start, &c.Allowed, &c.RateLimited, &c.Denied); err != nil {
			return nil, err
		}
		c.Start = time.Unix(start, 0).UTC()
		out = append(out, c)
	}
	return out, nil
}

// sortedUsage returns batch in (key_id, hour) order, each row's hour
// rounded down to its start, refusing rows without a key or tenant.
func sortedUsage(batch []UsageCount) ([]UsageCount, error) {
	b := slices.Clone(batch)
	for i := range b {
		if b[i].KeyID == "" || b[i].Tenant == "" {
			return nil, fmt.Errorf("usage row %d: a key id and a tenant are required", i)
		}
		b[i].Start = UsageHour(b[i].Start)
	}
	slices.SortFunc(b, func(x, y UsageCount) int {
		return cmp.Or(cmp.Compare(x.KeyID, y.KeyID), x.Start.Compare(y.Start))
	})
	return b, nil
}

// AddUsage adds batch's counts to key_usage in one statement (the
// batch's columns as arrays, unnested), outside the version lock.
func (p *Postgres) AddUsage(ctx context.Context, batch []UsageCount) error {
	if len(batch) == 0 {
		return nil
	}
	b, err := sortedUsage(batch)
	if err != nil {
		return err
	}
	ids, tenants := make([]string, len(b)), make([]string, len(b))
	hours, allowed, limited, denied := make([]int64, len(b)), make([]int64, len(b)), make([]int64, len(b)), make([]int64, len(b))
	for i, c := range b {
		ids[i], tenants[i], hours[i] = c.KeyID, c.Tenant, c.Start.Unix()
		allowed[i], limited[i], denied[i] = c.Allowed, c.RateLimited, c.Denied
	}
	ctx, cancel := p.timeout(ctx)
	defer cancel()
	_, err = p.pool.Exec(ctx, pgUsageAdd, ids, hours, tenants, allowed, limited, denied)
	return p.failed(err)
}

// AddUsage adds batch's counts to key_usage through one prepared
// statement in one transaction.
func (s *SQLite) AddUsage(ctx context.Context, batch []UsageCount) error {
	if len(batch) == 0 {
		return nil
	}
	b, err := sortedUsage(batch)
	if err != nil {
		return err
	}
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	err = inTx(ctx, s.w, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, usageAdd)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, c := range b {
			if _, err := st.ExecContext(ctx, c.KeyID, c.Start.Unix(), c.Tenant, c.Allowed, c.RateLimited, c.Denied); err != nil {
				return err
			}
		}
		return nil
	})
	return s.failed(err)
}

// Usage implements DB.
func (p *Postgres) Usage(ctx context.Context, f UsageFilter) ([]UsageCount, error) {
	q, args, err := usageQuery(f)
	if err != nil {
		return nil, err
	}
	ctx, cancel := p.timeout(ctx)
	defer cancel()
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, p.failed(err)
	}
	defer rows.Close()
	out, err := usageRows(f, rows.Next, rows.Scan)
	if err == nil {
		err = rows.Err()
	}
	return out, p.failed(err)
}

// Usage implements DB.
func (s *SQLite) Usage(ctx context.Context, f UsageFilter) ([]UsageCount, error) {
	q, args, err := usageQuery(f)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.failed(err)
	}
	defer rows.Close()
	out, err := usageRows(f, rows.Next, rows.Scan)
	if err == nil {
		err = rows.Err()
	}
	return out, s.failed(err)
}

// PruneUsage implements DB: it deletes the hours that started before
// before's hour.
func (k *keyDB) PruneUsage(ctx context.Context, before time.Time) (int64, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	var n int64
	err := k.d.tx(ctx, func(q queries) error {
		var err error
		n, err = q.affected(ctx, stmtPruneUsage, UsageHour(before).Unix())
		return err
	})
	return n, k.failed(err)
}
