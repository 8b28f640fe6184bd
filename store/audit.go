package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Audit actions: every change of a key or grant writes one event, in the
// same transaction as the change.
const (
	ActionKeyCreated       = "key.created"
	ActionKeyImported      = "key.imported"
	ActionKeyRevoked       = "key.revoked"
	ActionKeyRolled        = "key.rolled"
	ActionKeyExpiryChanged = "key.expiry_changed"
	// ActionKeyUpdated: a key's allowed networks or metadata changed.
	ActionKeyUpdated   = "key.updated"
	ActionGrantSet     = "grant.set"
	ActionGrantRevoked = "grant.revoked"
	// ActionKeyLeaked: a key was found where it should not be (GitHub's
	// secret scanning); details say where. It changes nothing itself.
	ActionKeyLeaked = "key.leaked"
)

// Actions lists the audit actions, in the order a person reads them.
func Actions() []string {
	return []string{ActionKeyCreated, ActionKeyImported, ActionKeyRevoked, ActionKeyRolled,
		ActionKeyExpiryChanged, ActionKeyUpdated, ActionGrantSet, ActionGrantRevoked, ActionKeyLeaked}
}

// Actor types: who made a change.
const (
	ActorAdminToken = "admin_token" // a named admin token, through the admin API
	ActorCLI        = "cli"         // the keygate command, as an OS user
	ActorPortal     = "portal"      // a tenant's user, through the portal
	ActorOperator   = "operator"    // an operator signed in to the console
	ActorOIDC       = "oidc"        // an operator signed in to the console with single sign-on (name: email, else subject)
	ActorSystem     = "system"      // Keygate itself
	ActorGitHub     = "github"      // GitHub's secret scanning, reporting a leaked key
)

// Actor is who made a change: its type and its name (the token's name,
// the OS user, the portal user).
type Actor struct {
	Type, Name string
}

// Origin is where a change comes from: the actor, and, when the change
// came over HTTP, the client's address and the request's id. A write's
// context carries it (WithOrigin) to the audit event the write records.
type Origin struct {
	Actor     Actor
	SourceIP  string
	RequestID string
}

type originKey struct{}

// WithOrigin returns ctx carrying o, for the writes made with it.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginOf returns the origin ctx carries; without one, Keygate itself.
func OriginOf(ctx context.Context) Origin {
	if o, ok := ctx.Value(originKey{}).(Origin); ok && o.Actor.Type != "" {
		return o
	}
	return Origin{Actor: Actor{Type: ActorSystem, Name: "keygate"}}
}

// AuditEvent is one change, as the audit log keeps it. It never holds a
// key, a hash or a secret: Details says what changed in the change's own
// terms (scopes, grace, expiry).
type AuditEvent struct {
	ID        string // "evt_" + a time-ordered unique suffix
	At        time.Time
	Action    string
	Tenant    string
	KeyID     string // empty for a grant
	Actor     Actor
	SourceIP  string
	RequestID string
	Details   map[string]any
}

// AuditFilter selects audit events, newest first. Empty fields select all.
type AuditFilter struct {
	Tenant, KeyID, Action string
	Since                 time.Time // only events at or after Since
	After                 string    // cursor: only events older than the event with this ID
	Limit                 int       // 0: 100; at most 1,000
}

// Audit event ids sort by the time they were made: 13 hex digits of Unix
// microseconds (enough until the year 2255), then 16 random ones.
const (
	eventIDPrefix   = "evt_"
	eventIDTimeHex  = 13
	maxAuditPage    = 1000
	defaultAuditMax = 100
)

// newEventID returns a new, unique, time-ordered event id.
func newEventID(at time.Time) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("reading crypto/rand: %w", err)
	}
	return fmt.Sprintf("%s%0*x%016x", eventIDPrefix, eventIDTimeHex, at.UnixMicro(), binary.BigEndian.Uint64(r[:])), nil
}

// eventIDAt returns the smallest id an event made at t can have, so that
// "made before t" is the id range below it.
func eventIDAt(t time.Time) string {
	return fmt.Sprintf("%s%0*x", eventIDPrefix, eventIDTimeHex, max(t.UnixMicro(), 0))
}

// ValidEventID reports whether id is shaped like an audit event id, so a
// cursor from a client can be refused before it reaches a query.
func ValidEventID(id string) bool {
	rest, ok := strings.CutPrefix(id, eventIDPrefix)
	if !ok || len(rest) != eventIDTimeHex+16 {
		return false
	}
	for _, c := range rest {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// audit records one event of the change being written, with the origin
// the context carries, in the same transaction, and adds it to the events
// outbox under the same id with its subject as the transaction left it.
func (t *writeTx) audit(ctx context.Context, action, tenant, keyID string, details map[string]any) error {
	at := dbTime(time.Now())
	id, err := newEventID(at)
	if err != nil {
		return err
	}
	if details == nil {
		details = map[string]any{}
	}
	d, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("audit details of %s: %w", action, err)
	}
	o := OriginOf(ctx)
	err = t.q.exec(ctx, stmtInsertAudit, id, t.q.time(at), action, tenant, nullString(keyID),
		o.Actor.Type, o.Actor.Name, nullString(o.SourceIP), nullString(o.RequestID), string(d))
	if err != nil {
		return err
	}
	key, grant, err := t.subject(ctx, keyID)
	if err != nil {
		return err
	}
	return t.outbox(ctx, Event{ID: id, At: at, Type: action, Tenant: tenant, KeyID: keyID, Actor: o.Actor,
		RequestID: o.RequestID, Key: key, Grant: grant, Details: details})
}

// AuditEvents implements DB.
func (k *keyDB) AuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	var p pageQuery
	if f.Tenant != "" {
		p.add("tenant = $%d", f.Tenant)
	}
	if f.KeyID != "" {
		p.add("key_id = $%d", f.KeyID)
	}
	if f.Action != "" {
		p.add("action = $%d", f.Action)
	}
	if !f.Since.IsZero() {
		p.add("id >= $%d", eventIDAt(f.Since))
	}
	if f.After != "" {
		p.add("id < $%d", f.After)
	}
	q, args := p.sql(selectAudit, "id DESC", f.Limit, defaultAuditMax, maxAuditPage)
	evs, err := k.reads.events(ctx, q, args...)
	return evs, k.failed(err)
}

// PruneAudit implements DB.
func (k *keyDB) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	var n int64
	// A write that draws no version: nothing for a cache to see.
	err := k.d.versioned(ctx, func(q queries) (int64, error) {
		var err error
		n, err = q.affected(ctx, stmtPruneAudit, eventIDAt(before))
		return 0, err
	})
	return n, k.failed(err)
}

// decodeDetails reads an event's details as stored.
func decodeDetails(b []byte) (map[string]any, error) {
	d := map[string]any{}
	if len(b) == 0 {
		return d, nil
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("audit details: %w", err)
	}
	return d, nil
}

// optionalTime is t for an event's details, or nil for the zero time.
func optionalTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
