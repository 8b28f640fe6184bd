package admin

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/keygate/keygate/internal/duration"
	"github.com/keygate/keygate/store"
)

// EventView is an audit event as the CLI's --json and the admin API print it.
type EventView struct {
	ID        string         `json:"id"`
	At        time.Time      `json:"at"`
	Action    string         `json:"action"`
	Tenant    string         `json:"tenant"`
	KeyID     string         `json:"key_id,omitempty"`
	Actor     ActorView      `json:"actor"`
	SourceIP  string         `json:"source_ip,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
	Details   map[string]any `json:"details"`
}

// ActorView is who made a change.
type ActorView struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

// ViewEvent renders an audit event.
func ViewEvent(e store.AuditEvent) EventView {
	return EventView{ID: e.ID, At: e.At, Action: e.Action, Tenant: e.Tenant, KeyID: e.KeyID,
		Actor: ActorView{Type: e.Actor.Type, Name: e.Actor.Name}, SourceIP: e.SourceIP, RequestID: e.RequestID, Details: e.Details}
}

// ViewEvents renders audit events.
func ViewEvents(evs []store.AuditEvent) []EventView {
	out := make([]EventView, len(evs))
	for i, e := range evs {
		out[i] = ViewEvent(e)
	}
	return out
}

// ParseSince reads a "since" bound: an RFC 3339 time, or a duration
// ("24h", "7d") meaning that long before now.
func ParseSince(field, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := duration.Parse(v)
	if err != nil || d < 0 {
		return time.Time{}, invalid(field, "%q is neither an RFC 3339 time (2026-01-31T00:00:00Z) nor a duration ago (24h, 7d)", v)
	}
	return now.Add(-d), nil
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := AuditRequest{Tenant: q.Get("tenant"), KeyID: q.Get("key_id"), Action: q.Get("action"), After: q.Get("after")}
	var err error
	if req.Since, err = ParseSince("since", q.Get("since"), time.Now()); h.fail(w, r, err) {
		return
	}
	if v := q.Get("limit"); v != "" {
		if req.Limit, err = strconv.Atoi(v); err != nil || req.Limit < 1 {
			h.fail(w, r, invalid("limit", "%q is not a whole number from 1 to %d", v, MaxPageSize))
			return
		}
	}
	evs, next, err := h.svc.Audit(r.Context(), req)
	if h.fail(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Events []EventView `json:"events"`
		Next   string      `json:"next,omitempty"`
	}{ViewEvents(evs), next})
}

type expiryBody struct {
	// ExpiresAt is an RFC 3339 time, or null for "never"; ExpiresIn a
	// duration from now. One of them.
	ExpiresAt *string      `json:"expires_at"`
	ExpiresIn durationText `json:"expires_in"`
	Never     bool         `json:"never_expires"`
}

// setExpiry changes a key's expiry: POST /admin/v1/keys/{id}/expiry with
// {"expires_in":"30d"}, {"expires_at":"2027-01-01T00:00:00Z"} or
// {"never_expires":true}.
func (h *Handler) setExpiry(w http.ResponseWriter, r *http.Request) {
	var b expiryBody
	if !decode(w, r, &b, false) {
		return
	}
	set := 0
	var at time.Time
	if b.ExpiresAt != nil {
		set++
		t, err := time.Parse(time.RFC3339, *b.ExpiresAt)
		if err != nil {
			h.fail(w, r, invalid("expires_at", "%q is not an RFC 3339 time, e.g. 2027-01-31T00:00:00Z", *b.ExpiresAt))
			return
		}
		at = t
	}
	if b.ExpiresIn != "" {
		set++
		d, err := b.ExpiresIn.parse("expires_in")
		if h.fail(w, r, err) {
			return
		}
		if d <= 0 {
			h.fail(w, r, invalid("expires_in", "must be positive"))
			return
		}
		at = time.Now().Add(d)
	}
	if b.Never {
		set++
	}
	if set != 1 {
		h.fail(w, r, invalid("body", "give exactly one of expires_at, expires_in or never_expires"))
		return
	}
	rec, err := h.svc.SetExpiry(r.Context(), r.PathValue("id"), at)
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: key expiry changed", slog.Any("key", rec))
	writeJSON(w, http.StatusOK, ViewKey(rec, time.Now()))
}

// ClientIP is the address of the client that sent r, as the audit log
// records it.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// RequestID is r's X-Request-Id if it is a sane one (at most 128
// printable ASCII characters), else a new id.
func RequestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		ok := true
		for i := 0; i < len(id); i++ {
			if id[i] < 0x21 || id[i] > 0x7e {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return "req_" + hex.EncodeToString(b[:])
}
