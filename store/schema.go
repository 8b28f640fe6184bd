package store

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
)

// migration is one step of the schema, in both dialects. Steps are applied
// in order, each once, and recorded in schema_migrations; a released step
// is never edited, only followed by new ones.
type migration struct {
	version  int
	name     string
	sqlite   string
	postgres string
}

// migrations returns the schema's history, oldest first.
//
// Neither schema has a column for the key itself: only its hash.
//
// SQLite keeps times as INTEGER microseconds since the Unix epoch (UTC) and
// scopes as a JSON array; PostgreSQL as timestamptz and text[]. NULL is the
// zero time. version is the change-feed version from one counter shared by
// keys and grants: the one-row table version_counter in SQLite, the
// sequence change_version in PostgreSQL.
//
// audit_events ids sort by time (see newEventID), so that the newest
// events, a page after a cursor and the events before a retention horizon
// are all ranges of an index. key_usage counts a key's decisions per hour
// (hour: Unix seconds of the hour's start), added to by every replica.
//
// outbox_events is the events outbox: every audit event's row is written
// in the same transaction as the audit event, under the same id, and
// Keygate's own notices (expiry, rate limits) are added beside them, made
// idempotent by dedupe. subject holds the key or grant as it was (never a
// hash). dispatched marks the events whose webhook_deliveries, one per
// endpoint that wants the event, have been made; next_at is when a pending
// delivery is due, or until when a sender holds it.
//
// sessions holds portal and console sessions and their single-use codes:
// the public half of each token and the SHA-256 of its secret half.
//
// A key's allowed_cidrs (normalised prefixes; empty: anywhere) and
// metadata (a string map) are a JSON array and object in SQLite, cidr[]
// and jsonb in PostgreSQL.
func migrations() []migration {
	return []migration{{
		version: 1,
		name:    "keys, grants and the change version",
		sqlite: `
CREATE TABLE version_counter (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	value INTEGER NOT NULL
);
INSERT INTO version_counter (id, value) VALUES (1, 0);

CREATE TABLE keys (
	id           TEXT PRIMARY KEY,
	hash         BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
	prefix       TEXT NOT NULL,
	last4        TEXT NOT NULL,
	tenant       TEXT NOT NULL,
	name         TEXT NOT NULL DEFAULT '',
	env          TEXT NOT NULL,
	scopes       TEXT NOT NULL DEFAULT '[]',
	plan         TEXT NOT NULL DEFAULT '',
	lineage      TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER,
	revoked_at   INTEGER,
	last_used_at INTEGER,
	rolled_at    INTEGER,
	replaced_by  TEXT,
	imported     INTEGER NOT NULL DEFAULT 0,
	version      INTEGER NOT NULL
);
CREATE INDEX keys_version_idx ON keys (version);
CREATE INDEX keys_tenant_idx ON keys (tenant, id);
CREATE INDEX keys_lineage_idx ON keys (lineage);

CREATE TABLE grants (
	tenant     TEXT NOT NULL,
	org        TEXT NOT NULL,
	scopes     TEXT NOT NULL DEFAULT '[]',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	revoked_at INTEGER,
	version    INTEGER NOT NULL,
	PRIMARY KEY (tenant, org)
);
CREATE INDEX grants_version_idx ON grants (version);
`,
		postgres: `
CREATE SEQUENCE change_version AS bigint;

CREATE TABLE keys (
	id           text PRIMARY KEY,
	hash         bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
	prefix       text NOT NULL,
	last4        text NOT NULL,
	tenant       text NOT NULL,
	name         text NOT NULL DEFAULT '',
	env          text NOT NULL,
	scopes       text[] NOT NULL DEFAULT '{}',
	plan         text NOT NULL DEFAULT '',
	lineage      text NOT NULL,
	created_at   timestamptz NOT NULL,
	expires_at   timestamptz,
	revoked_at   timestamptz,
	last_used_at timestamptz,
	rolled_at    timestamptz,
	replaced_by  text,
	imported     boolean NOT NULL DEFAULT false,
	version      bigint NOT NULL
);
CREATE INDEX keys_version_idx ON keys (version);
CREATE INDEX keys_tenant_idx ON keys (tenant, id);
CREATE INDEX keys_lineage_idx ON keys (lineage);

CREATE TABLE grants (
	tenant     text NOT NULL,
	org        text NOT NULL,
	scopes     text[] NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	revoked_at timestamptz,
	version    bigint NOT NULL,
	PRIMARY KEY (tenant, org)
);
CREATE INDEX grants_version_idx ON grants (version);
`,
	}, {
		version: 2,
		name:    "audit events and usage counts",
		sqlite: `
CREATE TABLE audit_events (
	id         TEXT PRIMARY KEY,
	at         INTEGER NOT NULL,
	action     TEXT NOT NULL,
	tenant     TEXT NOT NULL,
	key_id     TEXT,
	actor_type TEXT NOT NULL,
	actor_name TEXT NOT NULL,
	source_ip  TEXT,
	request_id TEXT,
	details    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant_idx ON audit_events (tenant, id);
CREATE INDEX audit_events_key_idx ON audit_events (key_id, id);

CREATE TABLE key_usage (
	key_id       TEXT NOT NULL,
	hour         INTEGER NOT NULL,
	tenant       TEXT NOT NULL,
	allowed      INTEGER NOT NULL DEFAULT 0,
	rate_limited INTEGER NOT NULL DEFAULT 0,
	denied       INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (key_id, hour)
);
CREATE INDEX key_usage_tenant_idx ON key_usage (tenant, hour);
CREATE INDEX key_usage_hour_idx ON key_usage (hour);
`,
		postgres: `
CREATE TABLE audit_events (
	id         text PRIMARY KEY,
	at         timestamptz NOT NULL,
	action     text NOT NULL,
	tenant     text NOT NULL,
	key_id     text,
	actor_type text NOT NULL,
	actor_name text NOT NULL,
	source_ip  text,
	request_id text,
	details    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant_idx ON audit_events (tenant, id);
CREATE INDEX audit_events_key_idx ON audit_events (key_id, id);

CREATE TABLE key_usage (
	key_id       text NOT NULL,
	hour         bigint NOT NULL,
	tenant       text NOT NULL,
	allowed      bigint NOT NULL DEFAULT 0,
	rate_limited bigint NOT NULL DEFAULT 0,
	denied       bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (key_id, hour)
);
CREATE INDEX key_usage_tenant_idx ON key_usage (tenant, hour);
CREATE INDEX key_usage_hour_idx ON key_usage (hour);
`,
	}, {
		version: 3,
		name:    "the events outbox and webhook deliveries",
		sqlite: `
CREATE TABLE outbox_events (
	id         TEXT PRIMARY KEY,
	at         INTEGER NOT NULL,
	type       TEXT NOT NULL,
	tenant     TEXT NOT NULL,
	key_id     TEXT,
	actor_type TEXT NOT NULL,
	actor_name TEXT NOT NULL,
	request_id TEXT,
	subject    TEXT NOT NULL DEFAULT '{}',
	details    TEXT NOT NULL DEFAULT '{}',
	dedupe     TEXT UNIQUE,
	dispatched INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_events_undispatched_idx ON outbox_events (id) WHERE dispatched = false;

CREATE TABLE webhook_deliveries (
	event_id   TEXT NOT NULL,
	endpoint   TEXT NOT NULL,
	status     TEXT NOT NULL,
	attempts   INTEGER NOT NULL DEFAULT 0,
	next_at    INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	last_code  INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_status_idx ON webhook_deliveries (status, event_id);

CREATE INDEX keys_expires_idx ON keys (expires_at) WHERE expires_at IS NOT NULL AND revoked_at IS NULL;
`,
		postgres: `
CREATE TABLE outbox_events (
	id         text PRIMARY KEY,
	at         timestamptz NOT NULL,
	type       text NOT NULL,
	tenant     text NOT NULL,
	key_id     text,
	actor_type text NOT NULL,
	actor_name text NOT NULL,
	request_id text,
	subject    jsonb NOT NULL DEFAULT '{}',
	details    jsonb NOT NULL DEFAULT '{}',
	dedupe     text UNIQUE,
	dispatched boolean NOT NULL DEFAULT false
);
CREATE INDEX outbox_events_undispatched_idx ON outbox_events (id) WHERE dispatched = false;

CREATE TABLE webhook_deliveries (
	event_id   text NOT NULL,
	endpoint   text NOT NULL,
	status     text NOT NULL,
	attempts   integer NOT NULL DEFAULT 0,
	next_at    timestamptz NOT NULL,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	last_code  integer NOT NULL DEFAULT 0,
	last_error text NOT NULL DEFAULT '',
	PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_status_idx ON webhook_deliveries (status, event_id);

CREATE INDEX keys_expires_idx ON keys (expires_at) WHERE expires_at IS NOT NULL AND revoked_at IS NULL;
`,
	}, {
		version: 5,
		name:    "portal and console sessions",
		sqlite: `
CREATE TABLE sessions (
	id          TEXT PRIMARY KEY,
	kind        TEXT NOT NULL,
	secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),
	data        TEXT NOT NULL DEFAULT '{}',
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
`,
		postgres: `
CREATE TABLE sessions (
	id          text PRIMARY KEY,
	kind        text NOT NULL,
	secret_hash bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
	data        text NOT NULL DEFAULT '{}',
	created_at  timestamptz NOT NULL,
	expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
`,
	}, {
		version: 6,
		name:    "keys' allowed networks and metadata",
		sqlite: `
ALTER TABLE keys ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
`,
		postgres: `
ALTER TABLE keys ADD COLUMN allowed_cidrs cidr[] NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
`,
	}}
}

// applyMigrations runs apply for each migration whose version is not in
// applied, oldest first, inside the caller's migration transaction.
func applyMigrations(ctx context.Context, log *slog.Logger, database string, applied []int, apply func(m migration) error) error {
	for _, m := range migrations() {
		if slices.Contains(applied, m.version) {
			continue
		}
		if err := apply(m); err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
		log.InfoContext(ctx, "applied schema migration", "database", database, "version", m.version, "name", m.name)
	}
	return nil
}
