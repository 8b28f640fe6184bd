package admin

import (
	"errors"
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

// PortalAPIPrefix starts every route of the portal's JSON API.
const PortalAPIPrefix = "/portal/api/v1/"

// PortalAPI serves the portal's JSON API (PortalAPIPrefix) with the admin
// API's own handlers, shapes and errors, for the portal session its
// caller has put in the request's context (WithCaller): its authenticating
// front (the portal's cookie) is the only difference.
type PortalAPI struct{ h *Handler }

// NewPortalAPI returns the portal's JSON API over svc. Logging out, which
// ends the cookie's session, is the front's.
func NewPortalAPI(svc *Service, log *slog.Logger) (*PortalAPI, error) {
	if svc == nil || log == nil {
		return nil, errors.New("admin: service and logger are required")
	}
	h := &Handler{svc: svc, log: log, mux: http.NewServeMux(), prefix: PortalAPIPrefix, name: "portal API"}
	h.mux.HandleFunc("GET /portal/api/v1/keys", h.listKeys)
	h.mux.HandleFunc("POST /portal/api/v1/keys", h.createKey)
	h.mux.HandleFunc("GET /portal/api/v1/keys/{id}", h.showKey)
	h.mux.HandleFunc("POST /portal/api/v1/keys/{id}/revoke", h.revokeKey)
	h.mux.HandleFunc("POST /portal/api/v1/keys/{id}/roll", h.rollKey)
	h.mux.HandleFunc("GET /portal/api/v1/audit", h.listAudit)
	h.mux.HandleFunc(PortalAPIPrefix, h.noRoute)
	return &PortalAPI{h: h}, nil
}

// ServeHTTP answers 401 unless the context carries a portal session.
func (a *PortalAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if CallerOf(r.Context()).Tenant == "" {
		WriteError(w, http.StatusUnauthorized, "unauthorized", "no portal session: open the portal from your platform's settings again")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	a.h.mux.ServeHTTP(w, r)
}

// WriteError answers status with the admin API's JSON error body.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	writeError(w, status, code, msg)
}
