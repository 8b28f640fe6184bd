package admin

import (
	"log/slog"
	"net/http"
)

// openPortalSession answers POST /admin/v1/portal/sessions: 201 with the
// single-use link ({"url":…,"expires_at":…}) the platform's backend
// redirects its user to.
func (h *Handler) openPortalSession(w http.ResponseWriter, r *http.Request) {
	var b PortalSessionRequest
	if !decode(w, r, &b, false) {
		return
	}
	link, err := h.svc.OpenPortalSession(r.Context(), b)
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: portal session opened", slog.String("tenant", b.Tenant), slog.String("user", b.User))
	writeJSON(w, http.StatusCreated, link)
}
