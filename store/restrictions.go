package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/keygate/keygate/keys"
)

// KeyUpdate is a change to a key's allowed networks and metadata: a nil
// field is left as it is; a pointer to an empty value clears it.
type KeyUpdate struct {
	AllowedCIDRs *[]netip.Prefix
	Metadata     *map[string]string
}

// UpdateKey implements DB.
func (k *keyDB) UpdateKey(ctx context.Context, id string, u KeyUpdate) (keys.Record, error) {
	if u.AllowedCIDRs == nil && u.Metadata == nil {
		return keys.Record{}, invalidRecord("key update changes nothing: give allowed networks, metadata or both")
	}
	return k.updateKey(ctx, id, ActionKeyUpdated, func(r *keys.Record) (map[string]any, error) {
		if !r.RevokedAt.IsZero() {
			return nil, errRevoked(r.ID)
		}
		d := map[string]any{}
		if u.AllowedCIDRs != nil {
			d["previous_allowed_cidrs"] = keys.FormatCIDRs(r.AllowedCIDRs)
			r.AllowedCIDRs = *u.AllowedCIDRs
		}
		if u.Metadata != nil {
			d["previous_metadata"] = metadataOrEmpty(r.Metadata)
			r.Metadata = *u.Metadata
		}
		if err := prepareRestrictions(r); err != nil {
			return nil, err
		}
		if u.AllowedCIDRs != nil {
			d["allowed_cidrs"] = keys.FormatCIDRs(r.AllowedCIDRs)
		}
		if u.Metadata != nil {
			d["metadata"] = metadataOrEmpty(r.Metadata)
		}
		return d, nil
	})
}

// prepareRestrictions validates and normalises r's allowed networks and
// metadata as they will be stored, nil when empty.
func prepareRestrictions(r *keys.Record) error {
	ps, err := keys.ParseCIDRs(keys.FormatCIDRs(r.AllowedCIDRs))
	if err != nil {
		return invalidRecord(fmt.Sprintf("key record %s: allowed_cidrs: %v", r.ID, err))
	}
	if err := keys.ValidateMetadata(r.Metadata); err != nil {
		return invalidRecord(fmt.Sprintf("key record %s: metadata: %v", r.ID, err))
	}
	r.AllowedCIDRs, r.Metadata = cidrsOrNil(ps), metadataOrNil(maps.Clone(r.Metadata))
	return nil
}

func cidrsOrNil(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return nil
	}
	return slices.Clip(ps)
}

func metadataOrNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func metadataOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (sqliteCodec) cidrs(ps []netip.Prefix) any {
	b, _ := json.Marshal(keys.FormatCIDRs(ps)) // a []string always encodes
	return string(b)
}

func (sqliteCodec) metadata(m map[string]string) any {
	b, _ := json.Marshal(metadataOrEmpty(m)) // a map of strings always encodes
	return string(b)
}

func (pgCodec) cidrs(ps []netip.Prefix) any {
	if ps == nil {
		return []netip.Prefix{}
	}
	return ps
}

func (pgCodec) metadata(m map[string]string) any { return metadataOrEmpty(m) }

// jsonCIDRs scans allowed networks stored as a JSON array of strings; an
// empty one is nil.
type jsonCIDRs struct{ ps *[]netip.Prefix }

// Scan implements sql.Scanner.
func (d jsonCIDRs) Scan(src any) error {
	b, err := jsonBytes(src, "allowed_cidrs")
	if err != nil {
		return err
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return fmt.Errorf("allowed_cidrs: %w", err)
	}
	ps := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("allowed_cidrs: %w", err)
		}
		ps = append(ps, p)
	}
	*d.ps = cidrsOrNil(ps)
	return nil
}

// jsonMetadata scans metadata stored as a JSON object; an empty one is nil.
type jsonMetadata struct{ m *map[string]string }

// Scan implements sql.Scanner.
func (d jsonMetadata) Scan(src any) error {
	b, err := jsonBytes(src, "metadata")
	if err != nil {
		return err
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	*d.m = metadataOrNil(m)
	return nil
}

func jsonBytes(src any, column string) ([]byte, error) {
	switch v := src.(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	}
	return nil, fmt.Errorf("%s stored as %T, want JSON text", column, src)
}
