package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/keygate/keygate/internal/duration"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// expiryPage is how many keys one read of the expiry scan takes.
const expiryPage = 500

// scanExpiring adds key.expiring and key.expired notices at once and then
// every ScanInterval until ctx ends. Every replica scans; the outbox's
// dedupe keeps one event per key, expiry and threshold.
func (p *Publisher) scanExpiring(ctx context.Context) {
	for {
		if err := p.scanOnce(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("webhooks: scanning for expiring keys failed; will retry", slog.Any("error", err))
		}
		p.scans.Add(1)
		if !wait(ctx, p.cfg.ScanInterval) {
			return
		}
	}
}

// scanOnce notices every key in force that expires within the longest of
// ExpiringBefore, or expired within MaxAge (older expiries are past
// telling).
func (p *Publisher) scanOnce(ctx context.Context) error {
	now := p.cfg.Now()
	var longest time.Duration
	if n := len(p.cfg.ExpiringBefore); n > 0 {
		longest = p.cfg.ExpiringBefore[n-1]
	}
	added := 0
	for after := ""; ; {
		rs, err := p.db.ExpiringKeys(ctx, now.Add(-p.cfg.MaxAge), now.Add(longest), after, expiryPage)
		if err != nil {
			return err
		}
		var evs []store.Event
		for _, r := range rs {
			if e, ok := expiryNotice(r, now, p.cfg.ExpiringBefore); ok && p.wanted(e.Type) {
				evs = append(evs, e)
			}
		}
		n, err := p.db.AddEvents(ctx, evs)
		if err != nil {
			return err
		}
		added += n
		if len(rs) < expiryPage {
			break
		}
		after = rs[len(rs)-1].ID
	}
	if added > 0 {
		p.Notify()
	}
	return nil
}

// expiryNotice is the notice r is due at now: key.expired once it has
// expired, else key.expiring for the shortest of before (sorted, shortest
// first) that its expiry is within — a key first seen 5 days before its
// expiry gets the 7d notice, then the 1d one; one first seen 12 hours
// before gets only the 1d one. Its dedupe names the key, the threshold
// and the expiry, so that a key given a new expiry is told again.
func expiryNotice(r keys.Record, now time.Time, before []time.Duration) (store.Event, bool) {
	if r.ExpiresAt.IsZero() || !r.RevokedAt.IsZero() {
		return store.Event{}, false
	}
	rec := r
	rec.Hash = keys.Hash{}
	e := store.Event{Tenant: r.Tenant, KeyID: r.ID, At: now, Actor: keygate, Key: &rec,
		Details: map[string]any{"expires_at": r.ExpiresAt.UTC()}}
	if r.ReplacedBy != "" {
		e.Details["replaced_by"] = r.ReplacedBy // the end of a roll's grace
	}
	left := r.ExpiresAt.Sub(now)
	if left <= 0 {
		e.Type = store.EventKeyExpired
		e.Dedupe = fmt.Sprintf("%s/%s/%d", store.EventKeyExpired, r.ID, r.ExpiresAt.UnixMicro())
		return e, true
	}
	for _, b := range before {
		if left <= b {
			e.Type = store.EventKeyExpiring
			e.Details["before"] = duration.Format(b)
			e.Details["expires_in_seconds"] = int64(left / time.Second)
			e.Dedupe = fmt.Sprintf("%s/%s/%d/%d", store.EventKeyExpiring, r.ID, int64(b/time.Second), r.ExpiresAt.UnixMicro())
			return e, true
		}
	}
	return store.Event{}, false
}
