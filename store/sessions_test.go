package store

import (
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestSessions runs the session table's rules against both databases.
func TestSessions(t *testing.T) {
	for _, db := range []struct {
		name string
		open func(t testing.TB) DB
	}{{"SQLite", openSQLiteTest}, {"Postgres", openPGTest}} {
		t.Run(db.name, func(t *testing.T) {
			t.Run("RoundTrip", func(t *testing.T) { testSessionRoundTrip(t, db.open(t)) })
			t.Run("TakeOnce", func(t *testing.T) { testSessionTakeOnce(t, db.open(t)) })
		})
	}
}

func testSessionRoundTrip(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now().UTC()
	secret := sha256.Sum256([]byte("secret"))
	s := Session{ID: "ses_a", Kind: SessionPortal, SecretHash: secret, Data: []byte(`{"tenant":"acme"}`), ExpiresAt: now.Add(time.Hour)}
	if err := db.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSession(ctx, s); !errors.Is(err, ErrConflict) {
		t.Errorf("second put of one id: %v, want ErrConflict", err)
	}
	got, err := db.Session(ctx, SessionPortal, "ses_a", secret, now)
	if err != nil || string(got.Data) != `{"tenant":"acme"}` || got.SecretHash != secret || !got.ExpiresAt.Equal(dbTime(s.ExpiresAt)) {
		t.Fatalf("Session = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		name, kind, id string
		secret         [32]byte
		now            time.Time
	}{
		{"wrong secret", SessionPortal, "ses_a", sha256.Sum256([]byte("guess")), now},
		{"zero secret", SessionPortal, "ses_a", [32]byte{}, now},
		{"other kind", SessionConsole, "ses_a", secret, now},
		{"unknown id", SessionPortal, "ses_b", secret, now},
		{"expired", SessionPortal, "ses_a", secret, now.Add(time.Hour)},
	} {
		if _, err := db.Session(ctx, tc.kind, tc.id, tc.secret, tc.now); !errors.Is(err, ErrNotFound) || err.Error() != "session not found" {
			t.Errorf("%s: %v, want session not found", tc.name, err)
		}
		if _, err := db.TakeSession(ctx, tc.kind, tc.id, tc.secret, tc.now); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: take: %v, want ErrNotFound", tc.name, err)
		}
	}
	if _, err := db.Session(ctx, SessionPortal, "ses_a", secret, now); err != nil {
		t.Fatalf("a refused take deleted the session: %v", err)
	}
	if err := db.DeleteSession(ctx, SessionPortal, "ses_a"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Session(ctx, SessionPortal, "ses_a", secret, now); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	// Putting a session prunes the expired ones.
	old := Session{ID: "ses_old", Kind: SessionPortal, SecretHash: secret, CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	if err := db.PutSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSession(ctx, Session{ID: "ses_new", Kind: SessionPortal, SecretHash: secret, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Session(ctx, SessionPortal, "ses_old", secret, now.Add(-90*time.Minute)); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired session kept after a put: %v", err)
	}
}

func testSessionTakeOnce(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now()
	secret := sha256.Sum256([]byte("code"))
	if err := db.PutSession(ctx, Session{ID: "pc_1", Kind: SessionPortalCode, SecretHash: secret, Data: []byte(`{}`), ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for range 8 {
		wg.Go(func() {
			_, err := db.TakeSession(ctx, SessionPortalCode, "pc_1", secret, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, ErrNotFound):
				lost++
			default:
				t.Errorf("take: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 || lost != 7 {
		t.Errorf("8 concurrent takes of one code: %d got it, %d refused; want 1 and 7", won, lost)
	}
}
