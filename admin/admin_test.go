package admin

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

var testScopeRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*$`)

// newService returns a Service over a new SQLite database in a temporary
// folder, with the given key formats (nil: sk_test_ and sk_live_).
func newService(t *testing.T, formats []keys.Format) *Service {
	t.Helper()
	if formats == nil {
		formats = []keys.Format{{Prefix: "sk_test_", Env: keys.EnvTest, Checksum: true}, {Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}}
	}
	fs, err := keys.NewFormats(formats)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "keygate.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{
		Formats: fs, Hasher: keys.NewHasher(nil), Plans: []string{"test", "live"}, Grace: time.Hour,
		ValidScope: func(s string) error {
			if !testScopeRE.MatchString(s) {
				return fmt.Errorf("%q is not resource:action", s)
			}
			return nil
		},
	}, db)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestCreateDefaultEnv(t *testing.T) {
	testF := keys.Format{Prefix: "sk_test_", Env: keys.EnvTest, Checksum: true}
	liveF := keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}
	ccLive := keys.Format{Prefix: "cc_live_", Env: keys.EnvLive}
	cases := []struct {
		name    string
		formats []keys.Format
		env     keys.Env
		want    keys.Env // "": an error naming env
		prefix  string
	}{
		{"test and live: test", []keys.Format{testF, liveF}, "", keys.EnvTest, "sk_test_"},
		{"live only: live", []keys.Format{ccLive}, "", keys.EnvLive, "cc_live_"},
		{"test only: test", []keys.Format{testF}, "", keys.EnvTest, "sk_test_"},
		{"live only, test asked", []keys.Format{ccLive}, keys.EnvTest, "", ""},
		{"explicit live", []keys.Format{testF, liveF}, keys.EnvLive, keys.EnvLive, "sk_live_"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := newService(t, tc.formats)
			c, err := svc.Create(context.Background(), CreateRequest{Tenant: "cat", Env: tc.env})
			if tc.want == "" {
				if !errors.Is(err, ErrInvalid) || !regexp.MustCompile(`env: no key format is configured for test keys`).MatchString(err.Error()) {
					t.Fatalf("err = %v, want an invalid env", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Record.Env != tc.want || c.Record.Plan != string(tc.want) || c.Key[:len(tc.prefix)] != tc.prefix {
				t.Errorf("created env %s plan %s key %s…, want env %s prefix %s", c.Record.Env, c.Record.Plan, c.Key[:8], tc.want, tc.prefix)
			}
		})
	}
}

func TestValidationMessages(t *testing.T) {
	svc := newService(t, nil)
	ctx := context.Background()
	cases := []struct {
		name string
		do   func() error
		want string
	}{
		{"create without tenant", func() error { _, err := svc.Create(ctx, CreateRequest{}); return err }, "invalid request: tenant: required"},
		{"grant without tenant", func() error { _, err := svc.SetGrant(ctx, "", "org", nil); return err }, "invalid request: tenant: required"},
		{"grant without org", func() error { _, err := svc.SetGrant(ctx, "acme", "", nil); return err }, "invalid request: org: required"},
		{"grant bad org", func() error { _, err := svc.SetGrant(ctx, "acme", "a b", nil); return err }, `invalid request: org: "a b" is not a valid organization id`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, ErrInvalid) || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestListPages(t *testing.T) {
	svc := newService(t, nil)
	ctx := context.Background()
	var ids []string
	for range 5 {
		c, err := svc.Create(ctx, CreateRequest{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Record.ID)
	}
	cases := []struct {
		name  string
		limit int
		pages [][]int // indexes into the ids sorted
	}{
		{"no limit: one page", 0, [][]int{{0, 1, 2, 3, 4}}},
		{"limit 2", 2, [][]int{{0, 1}, {2, 3}, {4}}},
		{"limit divides the total: no empty last page", 5, [][]int{{0, 1, 2, 3, 4}}},
		{"limit above the total", 10, [][]int{{0, 1, 2, 3, 4}}},
	}
	all, _, err := svc.List(ctx, ListRequest{})
	if err != nil || len(all) != len(ids) {
		t.Fatalf("List: %d keys, %v", len(all), err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			after := ""
			for i, page := range tc.pages {
				rs, next, err := svc.List(ctx, ListRequest{Limit: tc.limit, After: after})
				if err != nil {
					t.Fatal(err)
				}
				if len(rs) != len(page) {
					t.Fatalf("page %d: %d keys, want %d", i, len(rs), len(page))
				}
				for j, k := range page {
					if rs[j].ID != all[k].ID {
						t.Errorf("page %d key %d: %s, want %s", i, j, rs[j].ID, all[k].ID)
					}
				}
				last := i == len(tc.pages)-1
				if last != (next == "") || !last && next != rs[len(rs)-1].ID {
					t.Fatalf("page %d: next %q (last page: %v)", i, next, last)
				}
				after = next
			}
		})
	}
}

func TestRevokeTwice(t *testing.T) {
	svc := newService(t, nil)
	ctx := context.Background()
	c, err := svc.Create(ctx, CreateRequest{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := svc.Revoke(ctx, c.Record.ID)
	if err != nil || first.RevokedAt.IsZero() {
		t.Fatalf("first revoke: %v %v", first.RevokedAt, err)
	}
	again, err := svc.Revoke(ctx, c.Record.ID)
	if !errors.Is(err, ErrAlreadyRevoked) || !again.RevokedAt.Equal(first.RevokedAt) {
		t.Fatalf("second revoke: %v, revoked at %v (first %v)", err, again.RevokedAt, first.RevokedAt)
	}
	if _, err := svc.SetGrant(ctx, "acme", "clinic-1", []string{"patients:read"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RevokeGrant(ctx, "acme", "clinic-1"); err != nil {
		t.Fatalf("first grant revoke: %v", err)
	}
	if _, err := svc.RevokeGrant(ctx, "acme", "clinic-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second grant revoke: %v, want not found", err)
	}
}
