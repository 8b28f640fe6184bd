package admin

import (
	"net/http"
	"time"
)

// parseUsageQuery reads since, until and granularity; since and until are
// RFC 3339 times or durations ago (7d, 24h), as in the audit log.
func parseUsageQuery(r *http.Request) (UsageQuery, error) {
	v := r.URL.Query()
	now := time.Now()
	since, err := ParseSince("since", v.Get("since"), now)
	if err != nil {
		return UsageQuery{}, err
	}
	until, err := ParseSince("until", v.Get("until"), now)
	if err != nil {
		return UsageQuery{}, err
	}
	return UsageQuery{Since: since, Until: until, Granularity: v.Get("granularity")}, nil
}

// keyUsage: GET /admin/v1/keys/{id}/usage?since=&until=&granularity=hour|day.
func (h *Handler) keyUsage(w http.ResponseWriter, r *http.Request) {
	q, err := parseUsageQuery(r)
	if h.fail(w, r, err) {
		return
	}
	v, err := h.svc.KeyUsage(r.Context(), r.PathValue("id"), q)
	if h.fail(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// tenantUsage: GET /admin/v1/tenants/{tenant}/usage?since=&until=&granularity=hour|day.
func (h *Handler) tenantUsage(w http.ResponseWriter, r *http.Request) {
	q, err := parseUsageQuery(r)
	if h.fail(w, r, err) {
		return
	}
	v, err := h.svc.TenantUsage(r.Context(), r.PathValue("tenant"), q)
	if h.fail(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, v)
}
