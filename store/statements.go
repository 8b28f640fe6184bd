package store

import (
	"strconv"

	"github.com/keygate/keygate/keys"
)

// The statements both dialects run as written: modernc.org/sqlite binds
// $N to the Nth argument as PostgreSQL does, and both name the row an upsert
// conflicts with by its table. dialectSQL holds the ones that differ.
const (
	keyColumns   = `id, hash, prefix, last4, tenant, name, env, scopes, plan, lineage, created_at, expires_at, revoked_at, last_used_at, rolled_at, replaced_by, imported, version, allowed_cidrs, metadata`
	grantColumns = `tenant, org, scopes, created_at, updated_at, revoked_at, version`

	selectKeys   = `SELECT ` + keyColumns + ` FROM keys`
	selectGrants = `SELECT ` + grantColumns + ` FROM grants`

	stmtKeyByHash  = selectKeys + ` WHERE hash = $1`
	stmtKeyByID    = selectKeys + ` WHERE id = $1`
	stmtActiveKeys = selectKeys + `
WHERE id > $1 AND (revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2)
ORDER BY id`
	stmtKeysAfter   = selectKeys + ` WHERE version > $1 ORDER BY version`
	stmtGrantsAfter = selectGrants + ` WHERE version > $1 ORDER BY version`
	stmtListGrants  = selectGrants + ` WHERE revoked_at IS NULL AND ($1 = '' OR tenant = $1) ORDER BY tenant, org`

	stmtInsertKey = `INSERT INTO keys (` + keyColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`
	stmtUpdateKey = `UPDATE keys SET expires_at = $1, revoked_at = $2, rolled_at = $3, replaced_by = $4, version = $5,
	allowed_cidrs = $6, metadata = $7 WHERE id = $8`
	stmtPutGrant = `INSERT INTO grants (` + grantColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant, org) DO UPDATE SET
	scopes = excluded.scopes,
	created_at = CASE WHEN grants.revoked_at IS NULL THEN grants.created_at ELSE excluded.created_at END,
	updated_at = excluded.updated_at,
	revoked_at = excluded.revoked_at,
	version = excluded.version
RETURNING ` + grantColumns
	stmtRevokeGrant = `UPDATE grants SET revoked_at = $1, updated_at = $1, version = $2
WHERE tenant = $3 AND org = $4 AND revoked_at IS NULL RETURNING ` + grantColumns
)

// keyColumnNames is keyColumns as a list, for PostgreSQL's COPY.
var keyColumnNames = []string{"id", "hash", "prefix", "last4", "tenant", "name", "env", "scopes", "plan", "lineage",
	"created_at", "expires_at", "revoked_at", "last_used_at", "rolled_at", "replaced_by", "imported", "version", "allowed_cidrs", "metadata"}

// keyArgs is r as the arguments of stmtInsertKey, in keyColumns order.
func keyArgs(c codec, r *keys.Record) []any {
	return []any{r.ID, r.Hash[:], r.Prefix, r.Last4, r.Tenant, r.Name, string(r.Env), c.scopes(r.Scopes), r.Plan, r.Lineage,
		c.time(r.CreatedAt), c.time(r.ExpiresAt), c.time(r.RevokedAt), c.time(r.LastUsedAt), c.time(r.RolledAt),
		nullString(r.ReplacedBy), r.Imported, r.Version, c.cidrs(r.AllowedCIDRs), c.metadata(r.Metadata)}
}

// listKeysQuery is ListKeys' statement for f, with its arguments.
func listKeysQuery(f ListFilter) (string, []any) {
	q := selectKeys + ` WHERE id > $1`
	args := []any{f.After}
	if f.Tenant != "" {
		args = append(args, f.Tenant)
		q += ` AND tenant = $` + strconv.Itoa(len(args))
	}
	if !f.IncludeRevoked {
		q += ` AND revoked_at IS NULL`
	}
	return withLimit(q+` ORDER BY id`, args, f.Limit)
}

// withLimit adds a LIMIT clause for limit > 0 (the dialects spell "no
// limit" differently, so none is spelled at all).
func withLimit(q string, args []any, limit int) (string, []any) {
	if limit <= 0 {
		return q, args
	}
	args = append(args, limit)
	return q + ` LIMIT $` + strconv.Itoa(len(args)), args
}

// nullString is s as an argument: NULL for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Audit events.
const (
	auditColumns    = `id, at, action, tenant, key_id, actor_type, actor_name, source_ip, request_id, details`
	selectAudit     = `SELECT ` + auditColumns + ` FROM audit_events`
	stmtInsertAudit = `INSERT INTO audit_events (` + auditColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	stmtPruneAudit  = `DELETE FROM audit_events WHERE id < $1`
)
