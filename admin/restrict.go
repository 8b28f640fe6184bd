package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// UpdateRequest changes a key's allowed networks and metadata: a nil
// field is left as it is, an empty one cleared. Each change replaces the
// whole list or map.
type UpdateRequest struct {
	AllowedCIDRs *[]string          `json:"allowed_cidrs"`
	Metadata     *map[string]string `json:"metadata"`
}

// restrictions validates a key's networks and metadata as the API takes
// them, each error naming its field.
func restrictions(cidrs []string, meta map[string]string) ([]netip.Prefix, map[string]string, error) {
	ps, err := keys.ParseCIDRs(cidrs)
	if err != nil {
		return nil, nil, invalid("allowed_cidrs", "%v", err)
	}
	if err := keys.ValidateMetadata(meta); err != nil {
		return nil, nil, invalid("metadata", "%v", err)
	}
	if len(meta) == 0 {
		meta = nil
	}
	return ps, meta, nil
}

// Update changes a key's allowed networks or metadata, or both; the
// change is an audit event (key.updated) and reaches every replica as a
// revocation does. A revoked key cannot be changed.
func (s *Service) Update(ctx context.Context, id string, r UpdateRequest) (keys.Record, error) {
	if _, err := s.key(ctx, id, PermKeysUpdate, "change keys"); err != nil {
		return keys.Record{}, err
	}
	if r.AllowedCIDRs == nil && r.Metadata == nil {
		return keys.Record{}, invalid("body", "give allowed_cidrs, metadata or both")
	}
	var u store.KeyUpdate
	var cidrs []string
	var meta map[string]string
	if r.AllowedCIDRs != nil {
		cidrs = *r.AllowedCIDRs
	}
	if r.Metadata != nil {
		meta = *r.Metadata
	}
	ps, m, err := restrictions(cidrs, meta)
	if err != nil {
		return keys.Record{}, err
	}
	if r.AllowedCIDRs != nil {
		u.AllowedCIDRs = &ps
	}
	if r.Metadata != nil {
		u.Metadata = &m
	}
	rec, err := s.db.UpdateKey(ctx, id, u)
	s.changed(err)
	if errors.Is(err, store.ErrRevoked) {
		return rec, fmt.Errorf("%w: id: key %s is revoked", ErrInvalid, id)
	}
	return rec, err
}

// updateKey answers PATCH /admin/v1/keys/{id} with the key as it now is.
func (h *Handler) updateKey(w http.ResponseWriter, r *http.Request) {
	var b UpdateRequest
	if !decode(w, r, &b, false) {
		return
	}
	rec, err := h.svc.Update(r.Context(), r.PathValue("id"), b)
	if h.fail(w, r, err) {
		return
	}
	h.log.Info("admin: key updated", slog.Any("key", rec))
	writeJSON(w, http.StatusOK, ViewKey(rec, time.Now()))
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
