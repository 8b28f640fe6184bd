package admin

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/store"
)

// AuditRequest selects audit events, newest first. Empty fields select all.
type AuditRequest struct {
	Tenant, KeyID, Action string
	Since                 time.Time
	After                 string // the next cursor of the previous page
	Limit                 int    // 0: DefaultPageSize; at most MaxPageSize
}

// Audit returns one page of the audit log and the cursor of the next
// page (empty on the last one). A portal session reads its tenant's
// events only.
func (s *Service) Audit(ctx context.Context, r AuditRequest) (events []store.AuditEvent, next string, err error) {
	p, err := allow(ctx, PermAuditRead, "read the audit log")
	if err != nil {
		return nil, "", err
	}
	if p.Tenant != "" {
		r.Tenant = p.Tenant
	}
	switch {
	case r.Action != "" && !slices.Contains(store.Actions(), r.Action):
		return nil, "", invalid("action", "%q is not one of %s", r.Action, strings.Join(store.Actions(), ", "))
	case r.After != "" && !store.ValidEventID(r.After):
		return nil, "", invalid("after", "%q is not an event id (use the next cursor of the previous page)", r.After)
	case r.Limit < 0 || r.Limit > MaxPageSize:
		return nil, "", invalid("limit", "must be from 1 to %d", MaxPageSize)
	}
	limit := r.Limit
	if limit == 0 {
		limit = DefaultPageSize
	}
	evs, err := s.db.AuditEvents(ctx, store.AuditFilter{
		Tenant: r.Tenant, KeyID: r.KeyID, Action: r.Action, Since: r.Since, After: r.After, Limit: limit + 1,
	})
	if err != nil {
		return nil, "", err
	}
	if len(evs) > limit {
		evs = evs[:limit]
		next = evs[len(evs)-1].ID
	}
	return evs, next, nil
}
