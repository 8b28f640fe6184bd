package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// TestSQLite runs the shared suite against a real SQLite file.
func TestSQLite(t *testing.T) { runSuite(t, openSQLiteTest) }

// TestPostgres runs the shared suite against the real PostgreSQL server,
// each test in a fresh schema.
func TestPostgres(t *testing.T) { runSuite(t, openPGTest) }

// runSuite is the behaviour both databases share. open returns a freshly
// migrated, empty database.
func runSuite(t *testing.T, open func(t testing.TB) DB) {
	tests := []struct {
		name string
		run  func(t *testing.T, db DB)
	}{
		{"InsertRoundTrip", testInsertRoundTrip},
		{"InsertConflict", testInsertConflict},
		{"InsertInvalid", testInsertInvalid},
		{"NotFound", testNotFound},
		{"ErrorsReadOnce", testErrorsReadOnce},
		{"Revoke", testRevoke},
		{"SetExpiry", testSetExpiry},
		{"ListKeys", testListKeys},
		{"ActiveKeys", testActiveKeys},
		{"Roll", testRoll},
		{"RollAtomic", testRollAtomic},
		{"TouchLastUsed", testTouchLastUsed},
		{"Grants", testGrants},
		{"ChangeFeed", testChangeFeed},
		{"ChangesPaging", testChangesPaging},
		{"ConcurrentWriters", testConcurrentWriters},
		{"BulkInsert", testBulkInsert},
		{"MigrateTwice", testMigrateTwice},
		{"AuditEvents", testAuditEvents},
		{"AuditAtomic", testAuditAtomic},
		{"AuditQuery", testAuditQuery},
		{"OutboxFromAudit", testOutboxFromAudit},
		{"OutboxDeliveries", testOutboxDeliveries},
		{"OutboxDedupe", testOutboxDedupe},
		{"OutboxClaimsOnce", testOutboxClaimsOnce},
		{"ExpiringKeys", testExpiringKeys},
		{"Restrictions", testRestrictions},
		{"UpdateKey", testUpdateKey},
		{"Usage", testUsage},
		{"UsageConcurrent", testUsageConcurrent},
		{"PruneUsage", testPruneUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, open(t))
		})
	}
}

func testInsertRoundTrip(t *testing.T, db DB) {
	ctx := t.Context()
	// A zone east of UTC and nanoseconds: both must be normalised away.
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, zone)
	full := newRecord("key_full", "tenant_a")
	full.Lineage = "key_root"
	full.CreatedAt = at
	full.ExpiresAt = at.Add(time.Hour)
	full.LastUsedAt = at.Add(time.Minute)
	full.Imported = true
	full.Scopes = []string{"patients:read", "billing:*"}

	tests := []struct {
		name string
		in   keys.Record
		want func(r *keys.Record) // edits in into the expected record
	}{
		{"all fields", full, func(r *keys.Record) {
			r.CreatedAt = time.Date(2026, 3, 3, 23, 36, 7, 123456000, time.UTC)
			r.ExpiresAt = r.CreatedAt.Add(time.Hour)
			r.LastUsedAt = r.CreatedAt.Add(time.Minute)
		}},
		{"nil scopes", func() keys.Record { r := newRecord("key_nil", "tenant_a"); r.Scopes = nil; r.CreatedAt = at; return r }(), func(r *keys.Record) {
			r.Scopes = []string{}
			r.Lineage = r.ID
			r.CreatedAt = dbTime(at)
		}},
		{"empty scopes", func() keys.Record {
			r := newRecord("key_empty", "tenant_a")
			r.Scopes = []string{}
			r.CreatedAt = at
			return r
		}(), func(r *keys.Record) {
			r.Lineage = r.ID
			r.CreatedAt = dbTime(at)
		}},
	}
	var lastVersion int64
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.InsertKey(ctx, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.in
			want.Scopes = slices.Clone(tc.in.Scopes)
			tc.want(&want)
			if got.Version <= lastVersion {
				t.Errorf("version %d, want > %d", got.Version, lastVersion)
			}
			lastVersion = got.Version
			want.Version = got.Version
			if show(got) != show(want) {
				t.Errorf("InsertKey returned\n%s\nwant\n%s", show(got), show(want))
			}
			byHash, err := db.KeyByHash(ctx, tc.in.Hash)
			if err != nil {
				t.Fatal(err)
			}
			if show(byHash) != show(want) {
				t.Errorf("KeyByHash\n%s\nwant\n%s", show(byHash), show(want))
			}
			byID, err := db.KeyByID(ctx, tc.in.ID)
			if err != nil {
				t.Fatal(err)
			}
			if show(byID) != show(want) {
				t.Errorf("KeyByID\n%s\nwant\n%s", show(byID), show(want))
			}
		})
	}
	if v := must[int64](t)(db.Version(ctx)); v != lastVersion {
		t.Errorf("Version() = %d, want %d", v, lastVersion)
	}

	// Zero CreatedAt means now.
	r := newRecord("key_now", "tenant_a")
	before := time.Now().Add(-time.Millisecond)
	got := must[keys.Record](t)(db.InsertKey(ctx, r))
	if got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now()) {
		t.Errorf("CreatedAt %s, want about now", got.CreatedAt)
	}
}

func testInsertConflict(t *testing.T, db DB) {
	ctx := t.Context()
	orig := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_1", "t")))
	sameHash := newRecord("key_2", "t")
	sameHash.Hash = orig.Hash
	tests := []struct {
		name string
		r    keys.Record
	}{
		{"same hash", sameHash},
		{"same id", newRecord("key_1", "t")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := db.InsertKey(ctx, tc.r)
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("err = %v, want ErrConflict", err)
			}
		})
	}
	if v := must[int64](t)(db.Version(ctx)); v != orig.Version {
		t.Errorf("failed inserts moved Version to %d, want %d", v, orig.Version)
	}
}

func testInsertInvalid(t *testing.T, db DB) {
	ctx := t.Context()
	noID := newRecord("key_x", "t")
	noID.ID = ""
	noHash := newRecord("key_y", "t")
	noHash.Hash = keys.Hash{}
	for name, r := range map[string]keys.Record{"no id": noID, "zero hash": noHash} {
		if _, err := db.InsertKey(ctx, r); err == nil || errors.Is(err, ErrConflict) {
			t.Errorf("%s: err = %v, want a validation error", name, err)
		}
	}
}

func testNotFound(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now()
	tests := []struct {
		name string
		call func() error
	}{
		{"KeyByHash", func() error { _, err := db.KeyByHash(ctx, keys.Hash{1}); return err }},
		{"KeyByID", func() error { _, err := db.KeyByID(ctx, "key_nope"); return err }},
		{"RevokeKey", func() error { _, err := db.RevokeKey(ctx, "key_nope", now); return err }},
		{"SetExpiry", func() error { _, err := db.SetExpiry(ctx, "key_nope", now); return err }},
		{"RollKey", func() error {
			_, _, err := db.RollKey(ctx, "key_nope", newRecord("key_next", "t"), now, now.Add(time.Hour))
			return err
		}},
		{"RevokeGrant", func() error { _, err := db.RevokeGrant(ctx, "t", "org_nope", now); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		})
	}
	// RollKey of an unknown key must not have inserted next.
	if _, err := db.KeyByID(ctx, "key_next"); !errors.Is(err, ErrNotFound) {
		t.Errorf("next key of a failed roll: err = %v, want ErrNotFound", err)
	}
}

// testErrorsReadOnce pins the text of every refusal: one sentence about
// its subject, each word once, the sentinel still found by errors.Is.
func testErrorsReadOnce(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now()
	revoked := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_gone", "t")))
	must[keys.Record](t)(db.RevokeKey(ctx, revoked.ID, now))
	old := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_old", "t")))
	must2 := func(_, _ keys.Record, err error) error { return err }
	if err := must2(db.RollKey(ctx, old.ID, newRecord("key_new", "t"), now, now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	sameHash := newRecord("key_twin", "t")
	sameHash.Hash = old.Hash
	tests := []struct {
		name string
		call func() error
		is   error
		want string
	}{
		{"KeyByID", func() error { _, err := db.KeyByID(ctx, "key_x"); return err }, ErrNotFound, "key key_x not found"},
		{"KeyByHash", func() error { _, err := db.KeyByHash(ctx, keys.Hash{1}); return err }, ErrNotFound, "key not found"},
		{"RevokeKey unknown", func() error { _, err := db.RevokeKey(ctx, "key_x", now); return err }, ErrNotFound, "key key_x not found"},
		{"SetExpiry unknown", func() error { _, err := db.SetExpiry(ctx, "key_x", now); return err }, ErrNotFound, "key key_x not found"},
		{"RollKey unknown", func() error {
			return must2(db.RollKey(ctx, "key_x", newRecord("key_y", "t"), now, now))
		}, ErrNotFound, "key key_x not found"},
		{"RevokeGrant unknown", func() error { _, err := db.RevokeGrant(ctx, "t", "org_x", now); return err }, ErrNotFound,
			"grant of tenant t in org org_x not found"},
		{"RevokeKey revoked", func() error { _, err := db.RevokeKey(ctx, revoked.ID, now); return err }, ErrRevoked, "key key_gone is revoked"},
		{"SetExpiry revoked", func() error { _, err := db.SetExpiry(ctx, revoked.ID, now); return err }, ErrRevoked, "key key_gone is revoked"},
		{"RollKey revoked", func() error {
			return must2(db.RollKey(ctx, revoked.ID, newRecord("key_y", "t"), now, now))
		}, ErrRevoked, "key key_gone is revoked"},
		{"RollKey rolled", func() error {
			return must2(db.RollKey(ctx, old.ID, newRecord("key_y", "t"), now, now))
		}, ErrRolled, "key key_old was already rolled to key_new"},
		{"InsertKey same id", func() error { _, err := db.InsertKey(ctx, newRecord("key_old", "t")); return err }, ErrConflict,
			"key key_old or its hash already exists"},
		{"InsertKey same hash", func() error { _, err := db.InsertKey(ctx, sameHash); return err }, ErrConflict,
			"key key_twin or its hash already exists"},
		{"RollKey to a taken id", func() error {
			return must2(db.RollKey(ctx, "key_new", newRecord("key_old", "t"), now, now))
		}, ErrConflict, "key key_old or its hash already exists"},
		{"RollKey to an invalid key", func() error {
			return must2(db.RollKey(ctx, "key_new", keys.Record{ID: "key_y"}, now, now))
		}, nil, "key record key_y has an all-zero hash"},
		{"SetGrant without org", func() error { _, err := db.SetGrant(ctx, keys.Grant{Tenant: "t"}); return err }, nil,
			`grant needs a tenant and an organization, got tenant "t" org ""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
		})
	}
}

func testRevoke(t *testing.T, db DB) {
	ctx := t.Context()
	r := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_1", "t")))
	at := time.Now().Add(-time.Second)
	rev, err := db.RevokeKey(ctx, r.ID, at)
	if err != nil {
		t.Fatal(err)
	}
	if !rev.RevokedAt.Equal(dbTime(at)) || rev.Version <= r.Version {
		t.Fatalf("revoked: %s", show(rev))
	}
	if rev.Status(time.Now()) != keys.StatusRevoked {
		t.Errorf("status %s, want revoked", rev.Status(time.Now()))
	}
	if got := must[keys.Record](t)(db.KeyByHash(ctx, r.Hash)); show(got) != show(rev) {
		t.Errorf("stored\n%s\nwant\n%s", show(got), show(rev))
	}

	// Once revoked, always revoked: further changes are refused and the
	// record comes back unchanged.
	tests := []struct {
		name string
		call func() (keys.Record, error)
	}{
		{"RevokeKey", func() (keys.Record, error) { return db.RevokeKey(ctx, r.ID, time.Now()) }},
		{"SetExpiry", func() (keys.Record, error) { return db.SetExpiry(ctx, r.ID, time.Now().Add(time.Hour)) }},
		{"RollKey", func() (keys.Record, error) {
			old, _, err := db.RollKey(ctx, r.ID, newRecord("key_2", "t"), time.Now(), time.Now().Add(time.Hour))
			return old, err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			if !errors.Is(err, ErrRevoked) {
				t.Fatalf("err = %v, want ErrRevoked", err)
			}
			if show(got) != show(rev) {
				t.Errorf("returned\n%s\nwant unchanged\n%s", show(got), show(rev))
			}
		})
	}
	if got := must[keys.Record](t)(db.KeyByID(ctx, r.ID)); show(got) != show(rev) {
		t.Errorf("stored\n%s\nwant unchanged\n%s", show(got), show(rev))
	}
	if _, err := db.KeyByID(ctx, "key_2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("roll of a revoked key inserted its successor: %v", err)
	}
}

func testSetExpiry(t *testing.T, db DB) {
	ctx := t.Context()
	r := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_1", "t")))
	at := time.Now().Add(time.Hour)
	tests := []struct {
		name string
		at   time.Time
	}{
		{"set", at},
		{"earlier", at.Add(-2 * time.Hour)},
		{"clear", time.Time{}},
	}
	last := r.Version
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.SetExpiry(ctx, r.ID, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if !got.ExpiresAt.Equal(dbTime(tc.at)) || got.ExpiresAt.IsZero() != tc.at.IsZero() {
				t.Errorf("ExpiresAt = %s, want %s", got.ExpiresAt, tc.at)
			}
			if got.Version <= last {
				t.Errorf("version %d not above %d", got.Version, last)
			}
			last = got.Version
			if stored := must[keys.Record](t)(db.KeyByID(ctx, r.ID)); show(stored) != show(got) {
				t.Errorf("stored\n%s\nwant\n%s", show(stored), show(got))
			}
		})
	}
}

func testListKeys(t *testing.T, db DB) {
	ctx := t.Context()
	for _, id := range []string{"key_a1", "key_a2", "key_a3", "key_b1", "key_b2"} {
		must[keys.Record](t)(db.InsertKey(ctx, newRecord(id, "tenant_"+id[4:5])))
	}
	must[keys.Record](t)(db.RevokeKey(ctx, "key_a2", time.Now()))
	tests := []struct {
		name string
		f    ListFilter
		want string
	}{
		{"all active", ListFilter{}, "key_a1,key_a3,key_b1,key_b2"},
		{"include revoked", ListFilter{IncludeRevoked: true}, "key_a1,key_a2,key_a3,key_b1,key_b2"},
		{"tenant", ListFilter{Tenant: "tenant_a"}, "key_a1,key_a3"},
		{"tenant with revoked", ListFilter{Tenant: "tenant_a", IncludeRevoked: true}, "key_a1,key_a2,key_a3"},
		{"unknown tenant", ListFilter{Tenant: "tenant_z"}, ""},
		{"limit", ListFilter{Limit: 2, IncludeRevoked: true}, "key_a1,key_a2"},
		{"after", ListFilter{After: "key_a2", Limit: 2, IncludeRevoked: true}, "key_a3,key_b1"},
		{"after the last", ListFilter{After: "key_b2"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := db.ListKeys(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if rs == nil {
				t.Error("nil slice, want empty")
			}
			if got := ids(rs); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func testActiveKeys(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now()
	add := func(id string, edit func(r *keys.Record)) {
		r := newRecord(id, "t")
		edit(&r)
		must[keys.Record](t)(db.InsertKey(ctx, r))
	}
	add("key_1", func(r *keys.Record) {})
	add("key_2", func(r *keys.Record) { r.ExpiresAt = now.Add(-time.Second) })
	add("key_3", func(r *keys.Record) { r.ExpiresAt = now.Add(time.Hour) })
	add("key_4", func(r *keys.Record) { r.RevokedAt = now.Add(-time.Second) })
	add("key_5", func(r *keys.Record) { r.ExpiresAt = now })
	add("key_6", func(r *keys.Record) {})
	add("key_7", func(r *keys.Record) { r.RevokedAt = now.Add(time.Hour) }) // revoked from later on
	tests := []struct {
		name  string
		now   time.Time
		after string
		limit int
		want  string
	}{
		{"all", now, "", 0, "key_1,key_3,key_6,key_7"},
		{"page 1", now, "", 2, "key_1,key_3"},
		{"page 2", now, "key_3", 2, "key_6,key_7"},
		{"page 3", now, "key_7", 2, ""},
		{"later", now.Add(2 * time.Hour), "", 0, "key_1,key_6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := db.ActiveKeys(ctx, tc.now, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(rs); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func testRoll(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now()
	tests := []struct {
		name       string
		oldExpires time.Time // of the key before the roll
		grace      time.Time // RollKey's oldExpires
		want       time.Time
	}{
		{"never expiring", time.Time{}, now.Add(24 * time.Hour), now.Add(24 * time.Hour)},
		{"expires later than grace", now.Add(48 * time.Hour), now.Add(24 * time.Hour), now.Add(24 * time.Hour)},
		{"expires sooner than grace", now.Add(time.Hour), now.Add(24 * time.Hour), now.Add(time.Hour)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := newRecord(fmt.Sprintf("key_old%d", i), "tenant_r")
			o.ExpiresAt = tc.oldExpires
			o = must[keys.Record](t)(db.InsertKey(ctx, o))
			next := newRecord(fmt.Sprintf("key_new%d", i), "tenant_r")
			next.Lineage = "ignored: a roll keeps the lineage"
			old, created, err := db.RollKey(ctx, o.ID, next, now, tc.grace)
			if err != nil {
				t.Fatal(err)
			}
			if old.ID != o.ID || old.ReplacedBy != created.ID || !old.RolledAt.Equal(dbTime(now)) ||
				!old.ExpiresAt.Equal(dbTime(tc.want)) || old.Version <= o.Version {
				t.Errorf("old after roll: %s", show(old))
			}
			if created.ID != next.ID || created.Lineage != o.ID || created.Hash != next.Hash || created.Version <= o.Version ||
				created.Version == old.Version {
				t.Errorf("created: %s", show(created))
			}
			for _, want := range []keys.Record{old, created} {
				if got := must[keys.Record](t)(db.KeyByID(ctx, want.ID)); show(got) != show(want) {
					t.Errorf("stored\n%s\nwant\n%s", show(got), show(want))
				}
			}
			// The successor can be rolled in turn, in the same lineage;
			// the replaced key cannot be rolled again.
			third := newRecord(fmt.Sprintf("key_third%d", i), "tenant_r")
			_, c3, err := db.RollKey(ctx, created.ID, third, now, now.Add(time.Hour))
			if err != nil || c3.Lineage != o.ID {
				t.Errorf("second roll: %v, lineage %q", err, c3.Lineage)
			}
			again := newRecord(fmt.Sprintf("key_again%d", i), "tenant_r")
			got, _, err := db.RollKey(ctx, o.ID, again, now, now.Add(time.Hour))
			if !errors.Is(err, ErrRolled) || show(got) != show(old) {
				t.Errorf("rolling a rolled key: err = %v, returned %s", err, show(got))
			}
		})
	}
}

func testRollAtomic(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now()
	o := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_old", "t")))
	other := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_other", "t")))
	v := must[int64](t)(db.Version(ctx))

	dupHash := newRecord("key_next", "t")
	dupHash.Hash = other.Hash
	tests := []struct {
		name string
		next keys.Record
		is   error
	}{
		{"duplicate hash", dupHash, ErrConflict},
		{"duplicate id", newRecord("key_other", "t"), ErrConflict},
		{"invalid", keys.Record{ID: "key_next"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, created, err := db.RollKey(ctx, o.ID, tc.next, now, now.Add(time.Hour))
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			if created.ID != "" {
				t.Errorf("created returned on failure: %s", show(created))
			}
			if got := must[keys.Record](t)(db.KeyByID(ctx, o.ID)); show(got) != show(o) {
				t.Errorf("old key changed by a failed roll:\n%s\nwant\n%s", show(got), show(o))
			}
			if _, err := db.KeyByID(ctx, "key_next"); !errors.Is(err, ErrNotFound) {
				t.Errorf("failed roll left its new key: %v", err)
			}
			if got := must[int64](t)(db.Version(ctx)); got != v {
				t.Errorf("Version moved from %d to %d", v, got)
			}
		})
	}
}

func testTouchLastUsed(t *testing.T, db DB) {
	ctx := t.Context()
	r := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_1", "t")))
	r2 := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_2", "t")))
	v := must[int64](t)(db.Version(ctx))
	t0 := time.Now().Add(-time.Hour)
	tests := []struct {
		name string
		used map[string]time.Time
		want map[string]time.Time
	}{
		{"empty", map[string]time.Time{}, map[string]time.Time{r.ID: {}, r2.ID: {}}},
		{"first use", map[string]time.Time{r.ID: t0}, map[string]time.Time{r.ID: t0, r2.ID: {}}},
		{"later", map[string]time.Time{r.ID: t0.Add(time.Minute), r2.ID: t0}, map[string]time.Time{r.ID: t0.Add(time.Minute), r2.ID: t0}},
		{"never back", map[string]time.Time{r.ID: t0, r2.ID: t0.Add(-time.Minute)}, map[string]time.Time{r.ID: t0.Add(time.Minute), r2.ID: t0}},
		{"zero ignored", map[string]time.Time{r.ID: {}}, map[string]time.Time{r.ID: t0.Add(time.Minute)}},
		{"unknown ids ignored", map[string]time.Time{"key_nope": t0}, map[string]time.Time{r.ID: t0.Add(time.Minute)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := db.TouchLastUsed(ctx, tc.used); err != nil {
				t.Fatal(err)
			}
			for id, want := range tc.want {
				got := must[keys.Record](t)(db.KeyByID(ctx, id))
				if !got.LastUsedAt.Equal(dbTime(want)) || got.LastUsedAt.IsZero() != want.IsZero() {
					t.Errorf("%s: LastUsedAt = %s, want %s", id, got.LastUsedAt, want)
				}
			}
		})
	}
	// Bookkeeping, not a change: no version moves, the feed stays quiet.
	if got := must[int64](t)(db.Version(ctx)); got != v {
		t.Errorf("Version moved from %d to %d", v, got)
	}
	if ch := must[Changes](t)(db.Changes(ctx, v, 0)); len(ch.Keys)+len(ch.Grants) != 0 {
		t.Errorf("feed after touches: %d keys, %d grants", len(ch.Keys), len(ch.Grants))
	}
	if got := must[keys.Record](t)(db.KeyByID(ctx, r.ID)); got.Version != r.Version {
		t.Errorf("record version %d, want %d", got.Version, r.Version)
	}
}

func testGrants(t *testing.T, db DB) {
	ctx := t.Context()
	at := time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.Local)
	g1 := must[keys.Grant](t)(db.SetGrant(ctx, keys.Grant{Tenant: "t1", Org: "o1", Scopes: []string{"patients:read"}, UpdatedAt: at}))
	if !g1.CreatedAt.Equal(dbTime(at)) || !g1.UpdatedAt.Equal(dbTime(at)) || g1.CreatedAt.Location() != time.UTC ||
		!g1.Active() || g1.Version == 0 || !slices.Equal(g1.Scopes, []string{"patients:read"}) {
		t.Fatalf("created: %s", showGrant(g1))
	}
	g2 := must[keys.Grant](t)(db.SetGrant(ctx, keys.Grant{Tenant: "t1", Org: "o2"}))
	if g2.Scopes == nil || len(g2.Scopes) != 0 {
		t.Errorf("nil scopes read back as %#v", g2.Scopes)
	}
	must[keys.Grant](t)(db.SetGrant(ctx, keys.Grant{Tenant: "t2", Org: "o1", Scopes: []string{"billing:*"}}))

	// Replacing keeps the creation time and takes a new version.
	later := at.Add(time.Hour)
	r1 := must[keys.Grant](t)(db.SetGrant(ctx, keys.Grant{Tenant: "t1", Org: "o1", Scopes: []string{"patients:write"}, UpdatedAt: later}))
	if !r1.CreatedAt.Equal(g1.CreatedAt) || !r1.UpdatedAt.Equal(dbTime(later)) || r1.Version <= g1.Version ||
		!slices.Equal(r1.Scopes, []string{"patients:write"}) {
		t.Errorf("replaced: %s", showGrant(r1))
	}

	list := func(tenant string) string {
		gs := must[[]keys.Grant](t)(db.ListGrants(ctx, tenant))
		s := ""
		for _, g := range gs {
			s += g.Tenant + "/" + g.Org + " "
		}
		return s
	}
	if got := list(""); got != "t1/o1 t1/o2 t2/o1 " {
		t.Errorf("all grants: %q", got)
	}
	if got := list("t1"); got != "t1/o1 t1/o2 " {
		t.Errorf("grants of t1: %q", got)
	}

	revAt := later.Add(time.Minute)
	rev, err := db.RevokeGrant(ctx, "t1", "o1", revAt)
	if err != nil || rev.Active() || !rev.RevokedAt.Equal(dbTime(revAt)) || rev.Version <= r1.Version {
		t.Fatalf("revoke: %v %s", err, showGrant(rev))
	}
	if got := list("t1"); got != "t1/o2 " {
		t.Errorf("grants of t1 after revoke: %q", got)
	}
	if _, err := db.RevokeGrant(ctx, "t1", "o1", revAt); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking a revoked grant: err = %v, want ErrNotFound", err)
	}
	// Setting a revoked grant again puts it back in force, as a new grant.
	again := must[keys.Grant](t)(db.SetGrant(ctx, keys.Grant{Tenant: "t1", Org: "o1", Scopes: []string{"x:y"}}))
	if !again.Active() || again.CreatedAt.Equal(g1.CreatedAt) {
		t.Errorf("re-set grant: %s", showGrant(again))
	}
	if got := list("t1"); got != "t1/o1 t1/o2 " {
		t.Errorf("grants of t1 after re-set: %q", got)
	}
	if _, err := db.SetGrant(ctx, keys.Grant{Tenant: "t1"}); err == nil {
		t.Error("grant without an org accepted")
	}
}

// feedEntry is one change as a poller sees it.
type feedEntry struct {
	what    string // "key ID" or "grant T/O"
	version int64
}

func entries(ch Changes) []feedEntry {
	var es []feedEntry
	for _, k := range ch.Keys {
		es = append(es, feedEntry{"key " + k.ID, k.Version})
	}
	for _, g := range ch.Grants {
		es = append(es, feedEntry{"grant " + g.Tenant + "/" + g.Org, g.Version})
	}
	slices.SortFunc(es, func(a, b feedEntry) int { return int(a.version - b.version) })
	return es
}

func testChangeFeed(t *testing.T, db DB) {
	ctx := t.Context()
	start := must[int64](t)(db.Version(ctx))
	if start != 0 {
		t.Errorf("fresh database at version %d", start)
	}
	must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_a", "t")))
	must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_b", "t")))
	v := must[int64](t)(db.Version(ctx))
	now := time.Now()
	steps := []struct {
		name  string
		write func() error
		want  []string // what the feed shows after v, in order
	}{
		{"revoke", func() error { _, err := db.RevokeKey(ctx, "key_a", now); return err }, []string{"key key_a"}},
		{"roll", func() error {
			_, _, err := db.RollKey(ctx, "key_b", newRecord("key_c", "t"), now, now.Add(time.Hour))
			return err
		}, []string{"key key_c", "key key_b"}},
		{"expiry", func() error { _, err := db.SetExpiry(ctx, "key_c", now.Add(time.Hour)); return err }, []string{"key key_c"}},
		{"grant set", func() error { _, err := db.SetGrant(ctx, keys.Grant{Tenant: "t", Org: "o"}); return err }, []string{"grant t/o"}},
		{"grant revoke", func() error { _, err := db.RevokeGrant(ctx, "t", "o", now); return err }, []string{"grant t/o"}},
		{"touch is no change", func() error { return db.TouchLastUsed(ctx, map[string]time.Time{"key_c": now}) }, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.write(); err != nil {
				t.Fatal(err)
			}
			ch, err := db.Changes(ctx, v, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			last := v
			for _, e := range entries(ch) {
				got = append(got, e.what)
				if e.version <= last {
					t.Errorf("versions not increasing: %d after %d", e.version, last)
				}
				last = e.version
			}
			if !slices.Equal(got, st.want) || ch.More {
				t.Errorf("feed: %q more=%v, want %q", got, ch.More, st.want)
			}
			if ch.Version != last {
				t.Errorf("page Version %d, want %d", ch.Version, last)
			}
			if dv := must[int64](t)(db.Version(ctx)); dv != last {
				t.Errorf("Version() = %d, want %d", dv, last)
			}
			v = last
		})
	}
	// The whole feed, from the start, holds each row once, at its latest.
	ch := must[Changes](t)(db.Changes(ctx, 0, 0))
	if len(ch.Keys) != 3 || len(ch.Grants) != 1 || ch.More || ch.Version != v {
		t.Errorf("full feed: %d keys, %d grants, more=%v, version %d (want 3, 1, false, %d)", len(ch.Keys), len(ch.Grants), ch.More, ch.Version, v)
	}
}

func testChangesPaging(t *testing.T, db DB) {
	ctx := t.Context()
	// Seven changes, keys and grants interleaved.
	var want []feedEntry
	add := func(what string, v int64) { want = append(want, feedEntry{what, v}) }
	for i := range 7 {
		if i%3 == 1 {
			g := must[keys.Grant](t)(db.SetGrant(ctx, keys.Grant{Tenant: "t", Org: fmt.Sprintf("o%d", i)}))
			add("grant t/"+g.Org, g.Version)
			continue
		}
		r := must[keys.Record](t)(db.InsertKey(ctx, newRecord(fmt.Sprintf("key_%d", i), "t")))
		add("key "+r.ID, r.Version)
	}
	tests := []struct {
		limit int
		pages []int // entries per page
	}{
		{1, []int{1, 1, 1, 1, 1, 1, 1}},
		{3, []int{3, 3, 1}},
		{7, []int{7}},
		{100, []int{7}},
		{0, []int{7}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("limit %d", tc.limit), func(t *testing.T) {
			var got []feedEntry
			var after int64
			for i, n := range tc.pages {
				ch := must[Changes](t)(db.Changes(ctx, after, tc.limit))
				es := entries(ch)
				wantMore := i < len(tc.pages)-1
				if len(es) != n || ch.More != wantMore {
					t.Fatalf("page %d: %d entries, more=%v; want %d, %v", i, len(es), ch.More, n, wantMore)
				}
				if ch.Version != es[len(es)-1].version {
					t.Errorf("page %d: Version %d, want %d", i, ch.Version, es[len(es)-1].version)
				}
				got = append(got, es...)
				after = ch.Version
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages joined: %v\nwant %v", got, want)
			}
			end := must[Changes](t)(db.Changes(ctx, after, tc.limit))
			if len(end.Keys)+len(end.Grants) != 0 || end.More || end.Version != after || end.Keys == nil || end.Grants == nil {
				t.Errorf("past the end: %+v", end)
			}
		})
	}
}

// testConcurrentWriters checks the change feed's promise under load: a
// poller running while several writers commit sees every write. On
// PostgreSQL this is what the version lock is for: without it a write
// holding a lower version could commit after the poller moved past it.
func testConcurrentWriters(t *testing.T, db DB) {
	ctx := t.Context()
	const writers, perWriter = 6, 25
	stop := make(chan struct{})
	seen := map[string]int64{}
	var after int64
	poll := func() error {
		for {
			ch, err := db.Changes(ctx, after, 7)
			if err != nil {
				return err
			}
			for _, e := range entries(ch) {
				if e.version <= after {
					return fmt.Errorf("version %d after %d", e.version, after)
				}
				seen[e.what] = e.version
				after = e.version
			}
			if !ch.More {
				return nil
			}
		}
	}
	pollDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				pollDone <- nil
				return
			default:
			}
			if err := poll(); err != nil {
				pollDone <- err
				return
			}
		}
	}()

	var wg sync.WaitGroup
	final := make([]map[string]int64, writers)
	errs := make(chan error, writers)
	for w := range writers {
		final[w] = map[string]int64{}
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("key_w%d_%03d", w, i)
				r, err := db.InsertKey(ctx, newRecord(id, "t"))
				if err != nil {
					errs <- err
					return
				}
				final[w]["key "+id] = r.Version
				if i%5 == 4 { // and some updates of earlier keys
					prev := fmt.Sprintf("key_w%d_%03d", w, i-2)
					r, err := db.SetExpiry(ctx, prev, time.Now().Add(time.Hour))
					if err != nil {
						errs <- err
						return
					}
					final[w]["key "+prev] = r.Version
				}
				if i%10 == 9 {
					g, err := db.SetGrant(ctx, keys.Grant{Tenant: "t", Org: fmt.Sprintf("o_w%d_%d", w, i)})
					if err != nil {
						errs <- err
						return
					}
					final[w]["grant t/"+g.Org] = g.Version
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	close(stop)
	if err := <-pollDone; err != nil {
		t.Fatal(err)
	}
	if err := poll(); err != nil { // the last page
		t.Fatal(err)
	}
	want := map[string]int64{}
	for _, f := range final {
		for k, v := range f {
			want[k] = v
		}
	}
	if len(seen) != len(want) {
		t.Errorf("poller saw %d rows, want %d", len(seen), len(want))
	}
	for k, v := range want {
		if seen[k] != v {
			t.Errorf("%s: poller's last version %d, want %d", k, seen[k], v)
		}
	}
}

func testBulkInsert(t *testing.T, db DB) {
	ctx := t.Context()
	bi, ok := db.(BulkInserter)
	if !ok {
		t.Fatalf("%T does not implement BulkInserter", db)
	}
	before := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_0first", "t")))
	rs := seedRecords("bulk", 2500)
	rs[7].Scopes = nil
	if err := bi.BulkInsertKeys(ctx, rs); err != nil {
		t.Fatal(err)
	}
	got := must[keys.Record](t)(db.KeyByHash(ctx, rs[7].Hash))
	if got.ID != rs[7].ID || got.Lineage != rs[7].ID || got.Scopes == nil || got.Version <= before.Version {
		t.Errorf("bulk-inserted record: %s", show(got))
	}
	v := must[int64](t)(db.Version(ctx))
	if want := before.Version + 2500; v != want {
		t.Errorf("Version() = %d, want %d", v, want)
	}
	ch := must[Changes](t)(db.Changes(ctx, before.Version, 0))
	if len(ch.Keys) != 2500 {
		t.Errorf("feed holds %d bulk-inserted keys, want 2500", len(ch.Keys))
	}
	if err := bi.BulkInsertKeys(ctx, seedRecords("bulk", 1)); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate bulk insert: err = %v, want ErrConflict", err)
	}
	if err := bi.BulkInsertKeys(ctx, nil); err != nil {
		t.Errorf("empty bulk insert: %v", err)
	}
}

func testMigrateTwice(t *testing.T, db DB) {
	ctx := t.Context()
	r := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_1", "t")))
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := must[keys.Record](t)(db.KeyByID(ctx, r.ID)); show(got) != show(r) {
		t.Errorf("after second Migrate: %s", show(got))
	}
	if err := db.Ping(ctx); err != nil {
		t.Error(err)
	}
}
