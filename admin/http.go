package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// Handler serves the admin API under /admin/v1/: the same operations, and
// the same validation, as the CLI. Every request needs
// "Authorization: Bearer <token>".
type Handler struct {
	svc   *Service
	token [sha256.Size]byte
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewHandler returns the admin API; token must not be empty (an empty
// admin.token turns the API off: do not mount it).
func NewHandler(svc *Service, token string, log *slog.Logger) (*Handler, error) {
	if token == "" {
		return nil, errors.New("admin: empty token; leave the admin API unmounted instead")
	}
	if svc == nil || log == nil {
		return nil, errors.New("admin: service and logger are required")
	}
	h := &Handler{svc: svc, token: sha256.Sum256([]byte(token)), log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /admin/v1/keys", h.createKey)
	h.mux.HandleFunc("GET /admin/v1/keys", h.listKeys)
	h.mux.HandleFunc("POST /admin/v1/keys/import", h.importKey)
	h.mux.HandleFunc("GET /admin/v1/keys/{id}", h.showKey)
	h.mux.HandleFunc("POST /admin/v1/keys/{id}/revoke", h.revokeKey)
	h.mux.HandleFunc("DELETE /admin/v1/keys/{id}", h.revokeKey)
	h.mux.HandleFunc("POST /admin/v1/keys/{id}/roll", h.rollKey)
	h.mux.HandleFunc("GET /admin/v1/grants", h.listGrants)
	h.mux.HandleFunc("POST /admin/v1/grants", h.setGrant)
	h.mux.HandleFunc("PUT /admin/v1/grants/{tenant}/{org}", h.setGrant)
	h.mux.HandleFunc("DELETE /admin/v1/grants/{tenant}/{org}", h.revokeGrant)
	return h, nil
}

// ServeHTTP checks the token, in constant time, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(got))
	// Comparing fixed-size digests keeps the time independent of the
	// token's length as well as its content.
	if !ok || subtle.ConstantTimeCompare(sum[:], h.token[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keygate-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong admin token")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	h.mux.ServeHTTP(w, r)
}

// duration reads "24h"-style durations in JSON bodies.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"24h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

type createBody struct {
	Tenant    string   `json:"tenant"`
	Name      string   `json:"name"`
	Env       keys.Env `json:"env"`
	Prefix    string   `json:"prefix"`
	Scopes    []string `json:"scopes"`
	Plan      string   `json:"plan"`
	ExpiresIn duration `json:"expires_in"`
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request) {
	var b createBody
	if !decode(w, r, &b) {
		return
	}
	c, err := h.svc.Create(r.Context(), CreateRequest{Tenant: b.Tenant, Name: b.Name, Env: b.Env, Prefix: b.Prefix,
		Scopes: b.Scopes, Plan: b.Plan, ExpiresIn: time.Duration(b.ExpiresIn)})
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: key created", slog.Any("key", c.Record))
	writeJSON(w, http.StatusCreated, ViewCreated(c, time.Now()))
}

func (h *Handler) importKey(w http.ResponseWriter, r *http.Request) {
	var b ImportRequest
	if !decode(w, r, &b) {
		return
	}
	rec, err := h.svc.Import(r.Context(), b)
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: key imported", slog.Any("key", rec))
	writeJSON(w, http.StatusCreated, ViewKey(rec, time.Now()))
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := ListRequest{Tenant: q.Get("tenant"), After: q.Get("after")}
	if v := q.Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "all: not a boolean")
			return
		}
		req.IncludeRevoked = b
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit: not an integer")
			return
		}
		req.Limit = n
	}
	rs, err := h.svc.List(r.Context(), req)
	if h.fail(w, r, err) {
		return
	}
	now := time.Now()
	out := make([]KeyView, len(rs))
	for i, rec := range rs {
		out[i] = ViewKey(rec, now)
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
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
		Grace duration `json:"grace"`
	}
	if r.ContentLength != 0 && !decode(w, r, &b) {
		return
	}
	old, c, err := h.svc.Roll(r.Context(), r.PathValue("id"), time.Duration(b.Grace))
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
	if !decode(w, r, &b) {
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
	g, err := h.svc.RevokeGrant(r.Context(), r.PathValue("tenant"), r.PathValue("org"))
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
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such key or grant")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "a key with this hash or id exists already")
	default:
		h.log.Error("admin: request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the key database could not complete the request")
	}
	return true
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid_request", "body: more than one JSON value")
		return false
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
