package usage

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/store"
)

// These tests write through the real databases: SQLite files and
// PostgreSQL (the shared server, and a private one they may stop).

func openDB(t testing.TB, url string) store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, url, store.Options{QueryTimeout: 2 * time.Second, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// usageOf renders a key's hourly counts as "HH:MM a/r/d" lines.
func usageOf(t testing.TB, db store.DB, f store.UsageFilter) string {
	t.Helper()
	cs, err := db.Usage(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, c := range cs {
		s += fmt.Sprintf("%s %d/%d/%d\n", c.Start.Format("15:04"), c.Allowed, c.RateLimited, c.Denied)
	}
	return s
}

// TestOutageKeepsCounts stops a private PostgreSQL server under the
// recorder: flushes fail, decisions go on being counted, and once the
// server is back the next successful flush writes all of them, once.
func TestOutageKeepsCounts(t *testing.T) {
	pg := testpg.Start(t)
	db := openDB(t, pg.URL())
	r := newRec(t, db)
	ctx := t.Context()
	r.Record("key_a", "acme", Allowed, base)
	r.Record("key_a", "acme", Denied, base)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	pg.Stop()
	for i := range 3 {
		r.Record("key_a", "acme", Allowed, base.Add(time.Duration(i)*time.Minute))
		r.Record("key_a", "acme", RateLimited, base.Add(time.Hour))
		if err := r.Flush(ctx); err == nil {
			t.Fatal("a flush succeeded with the database stopped")
		}
	}
	if st := r.Stats(); st.Pending != 2 || st.FlushFailures == 0 {
		t.Errorf("while down: %+v; want 2 key-hours kept", st)
	}

	pg.Start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := r.Flush(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flushes still fail after the database came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, want := usageOf(t, db, store.UsageFilter{KeyID: "key_a"}), "10:00 4/0/1\n11:00 0/3/0\n"; got != want {
		t.Errorf("after the outage\n%swant\n%s", got, want)
	}
}

// TestReplicasAddUp: two recorders, each over its own connection to one
// database (as two replicas are), count decisions about the same keys and
// hours and flush as they go; the database holds the sum of both.
func TestReplicasAddUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "keygate.db") }},
		{"postgres", func(t *testing.T) string { return testpg.NewSchema(t, testpg.SharedURL()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url(t)
			dbs := []store.DB{openDB(t, url), openDB(t, url)}
			const perReplica, nkeys = 3000, 20
			var wg sync.WaitGroup
			for i, db := range dbs {
				r, err := New(Config{FlushInterval: time.Hour, Timeout: 5 * time.Second}, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := range perReplica {
						r.Record(fmt.Sprintf("key_%02d", n%nkeys), "acme", Outcome(n%3), base.Add(time.Duration(n%2)*time.Hour))
						if n%500 == 499 {
							if err := r.Flush(context.Background()); err != nil {
								t.Errorf("replica %d: %v", i, err)
							}
						}
					}
					if err := r.Flush(context.Background()); err != nil {
						t.Errorf("replica %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			const each = 2 * perReplica / 6 // per hour and outcome
			want := fmt.Sprintf("10:00 %d/%d/%d\n11:00 %d/%d/%d\n", each, each, each, each, each, each)
			if got := usageOf(t, dbs[0], store.UsageFilter{Tenant: "acme"}); got != want {
				t.Errorf("tenant's sums\n%swant\n%s", got, want)
			}
		})
	}
}
