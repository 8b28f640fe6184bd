package cache

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

const (
	warmPage    = 5000
	changesPage = 1000
	maxBackoff  = 5 * time.Second
)

// Run loads the cache, then follows the change feed until ctx ends: on
// every poll interval and whenever Notify is called (the PostgreSQL
// listener does). A database outage is waited out; cached keys keep
// serving meanwhile, and the feed catches up from the last version seen.
func (c *Cache) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := c.load(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		c.setDBUp(false, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	c.setDBUp(true, nil)
	c.ready.Store(true)

	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.wake:
		}
		err := c.Refresh(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.setDBUp(err == nil, err)
		c.reportBudget(time.Now())
	}
}

// cached reports whether ristretto holds k, without counting a use of it
// (Get would, and so sway admission towards keys the feed brings).
func cached(rc *ristretto.Cache[uint64, *entry], k uint64) bool {
	_, ok := rc.GetTTL(k)
	return ok
}

// put stores a record that must not be lost (warm start, change feed): a
// Set ristretto's buffer drops is tried again once the buffer has drained,
// and an active key's record that still cannot be stored makes the cache
// partial.
func (c *Cache) put(e *entry) {
	k := slot(&e.hash)
	if c.rc.Set(k, e, 1) {
		return
	}
	c.rc.Wait()
	if !c.rc.Set(k, e, 1) && e.active(c.cfg.Now().UnixNano()) {
		c.lost()
	}
}

// budgetReport is what reportBudget last logged.
type budgetReport struct {
	at                   time.Time
	unknown, unavailable uint64
}

// reportBudget logs, at most once a minute, how many misses found the
// look-up budget spent since the last report: the hot path only counts.
func (c *Cache) reportBudget(now time.Time) {
	u, a := c.overUnknown.Load(), c.overUnavailable.Load()
	r := &c.overLogged
	if u == r.unknown && a == r.unavailable || now.Sub(r.at) < time.Minute {
		return
	}
	c.log.Warn("cache misses over the database look-up budget were answered without a query",
		slog.Int64("miss_lookups_per_second", c.cfg.MissLookups),
		slog.Uint64("answered_unknown", u-r.unknown), slog.Uint64("answered_unavailable", a-r.unavailable),
		slog.Bool("complete", c.Complete()))
	*r = budgetReport{at: now, unknown: u, unavailable: a}
}

// load reads the starting version, all grants and (WarmStart) active keys.
// The version is read first so that whatever changes during the load is
// picked up by the first refresh.
func (c *Cache) load(ctx context.Context) error {
	start := time.Now()
	v, err := call(c, ctx, func(ctx context.Context) (int64, error) { return c.src.Version(ctx) })
	if err != nil {
		return fmt.Errorf("reading version: %w", err)
	}
	gs, err := call(c, ctx, func(ctx context.Context) ([]keys.Grant, error) { return c.src.ListGrants(ctx, "") })
	if err != nil {
		return fmt.Errorf("loading grants: %w", err)
	}
	m := make(map[grantKey]keys.Grant, len(gs))
	for _, g := range gs {
		m[grantKey{g.Tenant, g.Org}] = g
	}
	c.grants.Store(&m)
	n, all := 0, false
	if c.cfg.WarmStart {
		now, after := c.cfg.Now(), ""
		for {
			limit := int(min(int64(warmPage), c.cfg.MaxKeys-int64(n)))
			if limit == 0 {
				// The cache is full: one more active key means it cannot
				// hold them all.
				more, err := call(c, ctx, func(ctx context.Context) ([]keys.Record, error) {
					return c.src.ActiveKeys(ctx, now, after, 1)
				})
				if err != nil {
					return fmt.Errorf("warm start after %d keys: %w", n, err)
				}
				all = len(more) == 0
				break
			}
			page, err := call(c, ctx, func(ctx context.Context) ([]keys.Record, error) {
				return c.src.ActiveKeys(ctx, now, after, limit)
			})
			if err != nil {
				return fmt.Errorf("warm start after %d keys: %w", n, err)
			}
			for i := range page {
				c.put(c.entryOf(&page[i]))
			}
			// Sets are buffered and dropped when the buffer is full: let
			// each page land before sending the next.
			c.rc.Wait()
			n += len(page)
			if len(page) < limit {
				all = true
				break
			}
			after = page[len(page)-1].ID
		}
		if !all {
			c.log.Warn("key cache is partial: there are more active keys than cache.max_keys; "+
				"misses over cache.miss_lookups_per_second get 503 instead of 401", slog.Int64("max_keys", c.cfg.MaxKeys))
		}
	}
	c.warm.Store(all)
	c.version.Store(v)
	c.lastRefresh.Store(time.Now().UnixNano())
	c.log.Info("cache loaded", slog.Int("keys", n), slog.Int("grants", len(m)), slog.Bool("all_active_keys", all),
		slog.Int64("version", v), slog.Duration("took", time.Since(start)))
	return nil
}

// Refresh applies every change since the last version seen.
func (c *Cache) Refresh(ctx context.Context) error {
	for {
		after := c.version.Load()
		ch, err := call(c, ctx, func(ctx context.Context) (store.Changes, error) {
			return c.src.Changes(ctx, after, changesPage)
		})
		if err != nil {
			return fmt.Errorf("reading changes after %d: %w", after, err)
		}
		c.apply(ch)
		c.lastRefresh.Store(time.Now().UnixNano())
		if !ch.More {
			return nil
		}
	}
}

// apply updates cached records and grants from one page of the feed.
func (c *Cache) apply(ch store.Changes) {
	if len(ch.Keys) > 0 {
		now := c.cfg.Now().UnixNano()
		c.fillMu.Lock()
		c.gen.Add(1)
		for i := range ch.Keys {
			r := &ch.Keys[i]
			k := slot(&r.Hash)
			c.neg.remove(&r.Hash) // a key that now exists is not unknown
			e := c.entryOf(r)
			if cached(c.rc, k) {
				// A cached record is replaced in place, at once: the key
				// is never missing from the cache.
				c.rc.Set(k, e, 1)
				continue
			}
			// An uncached key: the Del discards a fill's Set of an older
			// record that may still wait in ristretto's buffer. A revoked
			// or expired key is not worth a slot until someone asks.
			c.rc.Del(k)
			if e.active(now) {
				c.put(e)
			}
		}
		// New records are visible when apply returns, so a complete
		// cache never answers a miss for a key the feed has brought.
		c.rc.Wait()
		c.fillMu.Unlock()
	}
	if len(ch.Grants) > 0 {
		old := *c.grants.Load()
		m := make(map[grantKey]keys.Grant, len(old)+len(ch.Grants))
		for k, g := range old {
			m[k] = g
		}
		for _, g := range ch.Grants {
			k := grantKey{g.Tenant, g.Org}
			if g.Active() {
				m[k] = g
			} else {
				delete(m, k)
			}
		}
		c.grants.Store(&m)
	}
	if ch.Version > c.version.Load() {
		c.version.Store(ch.Version)
	}
}

func (c *Cache) setDBUp(up bool, err error) {
	if c.dbUp.Swap(up) == up {
		return
	}
	if up {
		c.log.Info("key database reachable again; cache is following the change feed")
	} else {
		c.log.Error("key database unreachable; serving cached keys, unknown keys get 503", slog.Any("error", err))
	}
}

// call runs one database call with the cache's query timeout.
func call[T any](c *Cache, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	v, err := f(ctx)
	if err != nil {
		c.dbErrors.Add(1)
	}
	return v, err
}
