package cache

import (
	"context"
	"fmt"
	"log/slog"
	"time"

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
	}
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
	n := 0
	if c.cfg.WarmStart {
		now, after := c.cfg.Now(), ""
		for int64(n) < c.cfg.MaxKeys {
			limit := int(min(int64(warmPage), c.cfg.MaxKeys-int64(n)))
			page, err := call(c, ctx, func(ctx context.Context) ([]keys.Record, error) {
				return c.src.ActiveKeys(ctx, now, after, limit)
			})
			if err != nil {
				return fmt.Errorf("warm start after %d keys: %w", n, err)
			}
			for i := range page {
				c.rc.Set(slot(&page[i].Hash), c.entryOf(&page[i]), 1)
			}
			// Sets are buffered and dropped when the buffer is full: let
			// each page land before sending the next.
			c.rc.Wait()
			n += len(page)
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].ID
		}
	}
	c.version.Store(v)
	c.lastRefresh.Store(time.Now().UnixNano())
	c.log.Info("cache loaded", slog.Int("keys", n), slog.Int("grants", len(m)),
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
		c.fillMu.Lock()
		c.gen.Add(1)
		for i := range ch.Keys {
			r := ch.Keys[i]
			k := slot(&r.Hash)
			// Del is immediate and never dropped; it also removes a
			// remembered miss for a key that now exists. The Set that
			// follows may be dropped, which costs one miss, never a stale
			// answer.
			c.rc.Del(k)
			c.rc.Set(k, c.entryOf(&r), 1)
		}
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
