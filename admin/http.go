package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// Handler serves the admin API under /admin/v1/: the same operations, and
// the same validation and authorization, as the CLI. Every request needs
// "Authorization: Bearer <token>" with a configured admin token; its role
// says what it may do. Every answer, errors included, is JSON.
type Handler struct {
	svc    *Service
	tokens *Tokens
	log    *slog.Logger
	mux    *http.ServeMux
	prefix string // of every route: apiPrefix, or the portal's (PortalAPI)
	name   string // "admin API", "portal API", in errors
}

const apiPrefix = "/admin/v1/"

// Page sizes of GET /admin/v1/keys: a list without a limit gets
// DefaultPageSize keys and a next cursor, so that no caller loads a whole
// key table by accident.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// NewHandler returns the admin API; tokens must not be empty (without a
// token the admin API is off: do not mount it).
func NewHandler(svc *Service, tokens *Tokens, log *slog.Logger) (*Handler, error) {
	if tokens.Empty() {
		return nil, errors.New("admin: no admin token; leave the admin API unmounted instead")
	}
	if svc == nil || log == nil {
		return nil, errors.New("admin: service and logger are required")
	}
	h := &Handler{svc: svc, tokens: tokens, log: log, mux: http.NewServeMux(), prefix: apiPrefix, name: "admin API"}
	h.mux.HandleFunc("POST /admin/v1/keys", h.createKey)
	h.mux.HandleFunc("GET /admin/v1/keys", h.listKeys)
	h.mux.HandleFunc("POST /admin/v1/keys/import", h.importKey)
	h.mux.HandleFunc("GET /admin/v1/keys/{id}", h.showKey)
	h.mux.HandleFunc("POST /admin/v1/keys/{id}/revoke", h.revokeKey)
	h.mux.HandleFunc("DELETE /admin/v1/keys/{id}", h.revokeKey)
	h.mux.HandleFunc("POST /admin/v1/keys/{id}/roll", h.rollKey)
	h.mux.HandleFunc("POST /admin/v1/keys/{id}/expiry", h.setExpiry)
	h.mux.HandleFunc("PATCH /admin/v1/keys/{id}", h.updateKey)
	h.mux.HandleFunc("GET /admin/v1/audit", h.listAudit)
	h.mux.HandleFunc("GET /admin/v1/keys/{id}/usage", h.keyUsage)
	h.mux.HandleFunc("GET /admin/v1/tenants/{tenant}/usage", h.tenantUsage)
	h.mux.HandleFunc("GET /admin/v1/grants", h.listGrants)
	h.mux.HandleFunc("POST /admin/v1/grants", h.setGrant)
	h.mux.HandleFunc("PUT /admin/v1/grants/{tenant}/{org}", h.setGrant)
	h.mux.HandleFunc("DELETE /admin/v1/grants/{tenant}/{org}", h.revokeGrant)
	h.mux.HandleFunc("POST /admin/v1/portal/sessions", h.openPortalSession)
	h.mux.HandleFunc(apiPrefix, h.noRoute)
	return h, nil
}

// ServeHTTP authenticates the token (in constant time, see Tokens), makes
// its name and role the caller of what follows, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	tok, known := h.tokens.Authenticate(got)
	if !ok || !known {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keygate-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong admin token")
		return
	}
	ctx := WithCaller(r.Context(), tok.Principal(), ClientIP(r), RequestID(r))
	r = r.WithContext(ctx)
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	h.mux.ServeHTTP(w, r)
}

// probeMethods are the methods noRoute tries when it lists the allowed ones.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// noRoute answers what no route matched: 405 with Allow when the path
// exists under other methods, else 404; in JSON, like every other answer
// (ServeMux's own 404 and 405 are text/plain).
func (h *Handler) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range probeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := h.mux.Handler(probe); pattern != "" && pattern != h.prefix {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "no such path in the "+h.name+": "+r.URL.Path)
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
		fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
}

type createBody struct {
	Tenant    string       `json:"tenant"`
	Name      string       `json:"name"`
	Env       keys.Env     `json:"env"`
	Prefix    string       `json:"prefix"`
	Scopes    []string     `json:"scopes"`
	Plan      string       `json:"plan"`
	ExpiresIn durationText `json:"expires_in"`
	// See CreateRequest.
	AllowedCIDRs []string          `json:"allowed_cidrs"`
	Metadata     map[string]string `json:"metadata"`
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request) {
	var b createBody
	if !decode(w, r, &b, false) {
		return
	}
	expiresIn, err := b.ExpiresIn.parse("expires_in")
	if h.fail(w, r, err) {
		return
	}
	c, err := h.svc.Create(r.Context(), CreateRequest{Tenant: b.Tenant, Name: b.Name, Env: b.Env, Prefix: b.Prefix,
		Scopes: b.Scopes, Plan: b.Plan, ExpiresIn: expiresIn, AllowedCIDRs: b.AllowedCIDRs, Metadata: b.Metadata})
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: key created", slog.Any("key", c.Record))
	writeJSON(w, http.StatusCreated, ViewCreated(c, time.Now()))
}

func (h *Handler) importKey(w http.ResponseWriter, r *http.Request) {
	var b ImportRequest
	if !decode(w, r, &b, false) {
		return
	}
	rec, err := h.svc.Import(r.Context(), b)
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: key imported", slog.Any("key", rec))
	writeJSON(w, http.StatusCreated, ViewKey(rec, time.Now()))
}

// listKeys answers {"keys":[…],"next":"key_…"}; next is absent on the last
// page, else the value to pass as after for the following one.
func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := ListRequest{Tenant: q.Get("tenant"), After: q.Get("after"), Limit: DefaultPageSize}
	if v := q.Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("all: %q is not true or false", v))
			return
		}
		req.IncludeRevoked = b
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("limit: %q is not a whole number from 1 to %d", v, MaxPageSize))
			return
		}
		req.Limit = n
	}
	rs, next, err := h.svc.List(r.Context(), req)
	if h.fail(w, r, err) {
		return
	}
	now := time.Now()
	out := make([]KeyView, len(rs))
	for i, rec := range rs {
		out[i] = ViewKey(rec, now)
	}
	writeJSON(w, http.StatusOK, struct {
		Keys []KeyView `json:"keys"`
		Next string    `json:"next,omitempty"`
	}{out, next})
}

func (h *Handler) showKey(w http.ResponseWriter, r *http.Request) {
	rec, err := h.svc.Show(r.Context(), r.PathValue("id"))
	if h.fail(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, ViewKey(rec, time.Now()))
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	rec, err := h.svc.Revoke(r.Context(), r.PathValue("id"))
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: key revoked", slog.Any("key", rec))
	writeJSON(w, http.StatusOK, ViewKey(rec, time.Now()))
}

func (h *Handler) rollKey(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Grace durationText `json:"grace"`
	}
	if !decode(w, r, &b, true) {
		return
	}
	grace, err := b.Grace.parse("grace")
	if h.fail(w, r, err) {
		return
	}
	old, c, err := h.svc.Roll(r.Context(), r.PathValue("id"), grace)
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: key rolled", slog.Any("old", old), slog.Any("new", c.Record))
	now := time.Now()
	writeJSON(w, http.StatusCreated, struct {
		KeyView
		Old KeyView `json:"old"`
	}{ViewCreated(c, now), ViewKey(old, now)})
}

func (h *Handler) setGrant(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Tenant string   `json:"tenant"`
		Org    string   `json:"org"`
		Scopes []string `json:"scopes"`
	}
	if !decode(w, r, &b, false) {
		return
	}
	if t := r.PathValue("tenant"); t != "" {
		b.Tenant, b.Org = t, r.PathValue("org")
	}
	g, err := h.svc.SetGrant(r.Context(), b.Tenant, b.Org, b.Scopes)
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: grant set", slog.String("tenant", g.Tenant), slog.String("org", g.Org))
	writeJSON(w, http.StatusOK, ViewGrant(g))
}

// listGrants answers {"grants":[…]}: every grant in force, in one page (a
// tenant has a grant per organization it serves, not per request).
func (h *Handler) listGrants(w http.ResponseWriter, r *http.Request) {
	gs, err := h.svc.ListGrants(r.Context(), r.URL.Query().Get("tenant"))
	if h.fail(w, r, err) {
		return
	}
	out := make([]GrantView, len(gs))
	for i, g := range gs {
		out[i] = ViewGrant(g)
	}
	writeJSON(w, http.StatusOK, map[string]any{"grants": out})
}

func (h *Handler) revokeGrant(w http.ResponseWriter, r *http.Request) {
	tenant, org := r.PathValue("tenant"), r.PathValue("org")
	g, err := h.svc.RevokeGrant(r.Context(), tenant, org)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no grant in force for tenant %s in organization %s", tenant, org))
		return
	}
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: grant revoked", slog.String("tenant", g.Tenant), slog.String("org", g.Org))
	writeJSON(w, http.StatusOK, ViewGrant(g))
}

// fail writes err as the matching status; it reports whether it did.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	case errors.Is(err, ErrForbidden):
		writeError(w, http.StatusForbidden, "forbidden", strings.TrimPrefix(err.Error(), ErrForbidden.Error()+": "))
	case errors.Is(err, ErrAlreadyRevoked):
		writeError(w, http.StatusConflict, "already_revoked", strings.TrimPrefix(err.Error(), ErrAlreadyRevoked.Error()+": "))
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "a key with this hash or id exists already")
	default:
		h.log.Error("admin: request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the key database could not complete the request")
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // create and roll carry secrets
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
