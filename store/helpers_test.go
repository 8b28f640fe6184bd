package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/keys"
)

func testPGURL() string { return testpg.SharedURL() }

func newSchema(t testing.TB, base string) string { return testpg.NewSchema(t, base) }

// openURL opens and migrates a database, closed by t.Cleanup.
func openURL(t testing.TB, u string, opts Options) DB {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, u, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

func openSQLiteTest(t testing.TB) DB {
	return openURL(t, "sqlite:"+filepath.Join(t.TempDir(), "keygate.db"), Options{})
}

func openPGTest(t testing.TB) DB {
	return openURL(t, newSchema(t, testPGURL()), Options{})
}

// newRecord makes a key record with a random hash.
func newRecord(id, tenant string) keys.Record {
	var h keys.Hash
	rand.Read(h[:])
	return keys.Record{
		ID:     id,
		Hash:   h,
		Prefix: "sk_test_" + id[len(id)-min(len(id), 7):],
		Last4:  "abcd",
		Tenant: tenant,
		Name:   "key " + id,
		Env:    keys.EnvTest,
		Scopes: []string{"patients:read"},
		Plan:   "test",
	}
}

// seedRecords makes n records with hashes derived from seed and index.
func seedRecords(seed string, n int) []keys.Record {
	rs := make([]keys.Record, n)
	now := time.Now()
	for i := range rs {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		id := fmt.Sprintf("key_%s%09d", seed, i)
		rs[i] = keys.Record{
			ID:        id,
			Hash:      sha256.Sum256(append([]byte(seed), b[:]...)),
			Prefix:    "sk_live_AbCdEfG",
			Last4:     "wxyz",
			Tenant:    fmt.Sprintf("tenant_%d", i%100),
			Env:       keys.EnvLive,
			Scopes:    []string{"patients:read", "patients:write"},
			Plan:      "live",
			CreatedAt: now,
		}
	}
	return rs
}

// show renders a record with times in full (and their zone), so that a
// comparison also checks precision and UTC.
func show(r keys.Record) string {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.RFC3339Nano) + "/" + t.Location().String()
	}
	return fmt.Sprintf("id=%s hash=%s prefix=%s last4=%s tenant=%s name=%q env=%s scopes=%q(nil=%v) plan=%s lineage=%s created=%s expires=%s revoked=%s used=%s rolled=%s replaced_by=%s imported=%v version=%d cidrs=%v metadata=%v",
		r.ID, r.Hash, r.Prefix, r.Last4, r.Tenant, r.Name, r.Env, r.Scopes, r.Scopes == nil, r.Plan, r.Lineage,
		ts(r.CreatedAt), ts(r.ExpiresAt), ts(r.RevokedAt), ts(r.LastUsedAt), ts(r.RolledAt), r.ReplacedBy, r.Imported, r.Version, r.AllowedCIDRs, r.Metadata)
}

func showGrant(g keys.Grant) string {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.RFC3339Nano) + "/" + t.Location().String()
	}
	return fmt.Sprintf("%s/%s scopes=%q(nil=%v) created=%s updated=%s revoked=%s version=%d",
		g.Tenant, g.Org, g.Scopes, g.Scopes == nil, ts(g.CreatedAt), ts(g.UpdatedAt), ts(g.RevokedAt), g.Version)
}

func ids(rs []keys.Record) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.ID
	}
	return strings.Join(s, ",")
}

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
