package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/keys"
)

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such", "dir")
	tests := []struct {
		name string
		url  string
		opts Options
		want []string // substrings of the error
	}{
		{"empty", "", Options{}, []string{"empty", "sqlite:PATH"}},
		{"unknown scheme", "mysql://u@h/db", Options{}, []string{`"mysql"`, "sqlite:PATH", "postgres://", "postgresql://"}},
		{"no scheme", "keygate.db", Options{}, []string{"sqlite:PATH"}},
		{"missing directory", "sqlite:" + filepath.Join(missing, "k.db"), Options{}, []string{missing, "does not exist"}},
		{"missing directory, // form", "sqlite://" + filepath.Join(missing, "k.db"), Options{}, []string{missing, "does not exist"}},
		{"directory is a file", "sqlite:" + filepath.Join(os.Args[0], "k.db"), Options{}, []string{"not a directory"}},
		{"empty sqlite path", "sqlite:", Options{}, []string{"empty path"}},
		{"memory", "sqlite::memory:", Options{}, []string{"not supported"}},
		{"negative MaxConns", "sqlite:" + filepath.Join(dir, "k.db"), Options{MaxConns: -1}, []string{"MaxConns"}},
		{"postgres unreachable", "postgres://postgres:secret@127.0.0.1:1/db?sslmode=disable", Options{ConnectTimeout: time.Second},
			[]string{"cannot reach 127.0.0.1:1/db"}},
		{"postgres bad url", "postgres://h/db?sslmode=bogus", Options{}, []string{"sslmode"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			db, err := Open(t.Context(), tc.url, tc.opts)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
			if d := time.Since(began); d > 3*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open created the missing directory: %v", err)
	}
}

func TestOpenSQLiteURLForms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	for _, u := range []string{"sqlite:" + path, "sqlite://" + path} {
		db, err := Open(t.Context(), u, Options{})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if got := db.(*SQLite).Path(); got != path {
			t.Errorf("%s: path %s, want %s", u, got, path)
		}
		db.Close()
	}
	// A relative path is relative to the working directory.
	t.Chdir(t.TempDir())
	db, err := Open(t.Context(), "sqlite:keygate.db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := os.Stat("keygate.db"); err != nil {
		t.Error(err)
	}
}

// TestOpenDoesNotMigrate: Open leaves the schema alone; Migrate creates it.
func TestOpenDoesNotMigrate(t *testing.T) {
	for name, u := range map[string]string{
		"sqlite":   "sqlite:" + filepath.Join(t.TempDir(), "k.db"),
		"postgres": newSchema(t, testPGURL()),
	} {
		t.Run(name, func(t *testing.T) {
			db, err := Open(t.Context(), u, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, err = db.KeyByHash(t.Context(), keys.Hash{1})
			if err == nil || errors.Is(err, ErrNotFound) {
				t.Fatalf("lookup before Migrate: err = %v, want a technical error (no such table)", err)
			}
			if err := db.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			if _, err := db.KeyByHash(t.Context(), keys.Hash{1}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("lookup after Migrate: err = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestSQLiteNoRawKey: the database file holds the key's hash, never the key.
func TestSQLiteNoRawKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	db, err := Open(t.Context(), "sqlite:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	key, err := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	r := newRecord("key_secret", "t")
	r.Hash = keys.NewHasher(nil).Sum(key)
	r.Prefix = key[:keys.DisplayPrefixLen]
	r.Last4 = key[len(key)-4:]
	if _, err := db.InsertKey(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		var all []byte
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			b, err := os.ReadFile(path + suffix)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		if !bytes.Contains(all, r.Hash[:]) {
			t.Fatalf("%s: the hash is not in the files either; is this the right file?", when)
		}
		secret := key[keys.DisplayPrefixLen : len(key)-4] // what neither prefix nor last4 shows
		if bytes.Contains(all, []byte(key)) || bytes.Contains(all, []byte(secret)) {
			t.Fatalf("%s: the raw key is in the database files", when)
		}
	}
	check("open")
	db.Close()
	check("closed")
}

func TestSQLiteIsNoNotifier(t *testing.T) {
	if _, ok := openSQLiteTest(t).(Notifier); ok {
		t.Error("SQLite implements Notifier; it has no change notices")
	}
}

// TestConcurrentMigrate: replicas starting together on a fresh database
// each run Migrate through their own connections, and all succeed.
func TestConcurrentMigrate(t *testing.T) {
	for name, u := range map[string]string{
		"sqlite":   "sqlite:" + filepath.Join(t.TempDir(), "k.db"),
		"postgres": newSchema(t, testPGURL()),
	} {
		t.Run(name, func(t *testing.T) {
			const replicas = 5
			dbs := make([]DB, replicas)
			for i := range dbs {
				db, err := Open(t.Context(), u, Options{MaxConns: 2})
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				dbs[i] = db
			}
			var wg sync.WaitGroup
			errs := make([]error, replicas)
			start := make(chan struct{})
			for i, db := range dbs {
				wg.Go(func() {
					<-start
					errs[i] = db.Migrate(t.Context())
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
			}
			if _, err := dbs[0].InsertKey(t.Context(), newRecord("key_1", "t")); err != nil {
				t.Fatal(err)
			}
			if _, err := dbs[replicas-1].KeyByID(t.Context(), "key_1"); err != nil {
				t.Fatal(err)
			}
			if pg, ok := dbs[0].(*Postgres); ok {
				var n int
				if err := pg.Pool().QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations()) {
					t.Errorf("schema_migrations holds %d rows (%v), want %d", n, err, len(migrations()))
				}
			}
		})
	}
}

// listener runs db.Listen and counts its calls.
type listener struct {
	calls chan struct{}
	done  chan error
	stop  context.CancelFunc
}

func listen(t *testing.T, db *Postgres) *listener {
	ctx, cancel := context.WithCancel(t.Context())
	l := &listener{calls: make(chan struct{}, 1000), done: make(chan error, 1), stop: cancel}
	go func() { l.done <- db.Listen(ctx, func() { l.calls <- struct{}{} }) }()
	t.Cleanup(cancel)
	return l
}

func (l *listener) drain() {
	for {
		select {
		case <-l.calls:
		default:
			return
		}
	}
}

func (l *listener) wait(t *testing.T, what string, within time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	select {
	case <-l.calls:
		return time.Since(began)
	case err := <-l.done:
		t.Fatalf("%s: Listen returned early: %v", what, err)
	case <-time.After(within):
		t.Fatalf("%s: no call within %s", what, within)
	}
	return 0
}

func (l *listener) close(t *testing.T) {
	t.Helper()
	l.stop()
	select {
	case err := <-l.done:
		if err != nil {
			t.Errorf("Listen returned %v at the end of its context, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("Listen did not return when its context ended")
	}
}

func TestPostgresListen(t *testing.T) {
	u := newSchema(t, testPGURL())
	db := openURL(t, u, Options{}).(*Postgres)
	l := listen(t, db)
	l.wait(t, "connect", 5*time.Second)

	l.drain()
	if _, err := db.InsertKey(t.Context(), newRecord("key_1", "t")); err != nil {
		t.Fatal(err)
	}
	t.Logf("notice after insert in %s", l.wait(t, "notice", 2*time.Second))

	// Kill the listening backend: Listen reconnects and calls changed, so
	// its caller catches up on what it missed.
	l.drain()
	pool := db.Pool()
	var killed int
	err := pool.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = $1 AND query ILIKE 'listen%' AND pid <> pg_backend_pid()`,
		pool.Config().ConnConfig.RuntimeParams["application_name"]).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d listening backends (%v), want 1", killed, err)
	}
	t.Logf("reconnected in %s", l.wait(t, "reconnect", 5*time.Second))

	l.drain()
	if _, err := db.RevokeKey(t.Context(), "key_1", time.Now()); err != nil {
		t.Fatal(err)
	}
	l.wait(t, "notice after reconnect", 2*time.Second)
	l.close(t)
}

// TestPostgresListenServerRestart stops and restarts a private server
// under a listener: it keeps retrying and catches up once the server is
// back.
func TestPostgresListenServerRestart(t *testing.T) {
	srv := testpg.Start(t)
	u := newSchema(t, srv.URL())
	db := openURL(t, u, Options{ConnectTimeout: time.Second, QueryTimeout: 2 * time.Second}).(*Postgres)
	l := listen(t, db)
	l.wait(t, "connect", 5*time.Second)

	srv.Stop()
	time.Sleep(300 * time.Millisecond) // a few failed reconnects
	if err := db.Ping(t.Context()); err == nil {
		t.Error("Ping succeeded with the server down")
	}
	l.drain()
	srv.Start()
	t.Logf("reconnected %s after restart", l.wait(t, "reconnect", 5*time.Second))

	l.drain()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := db.InsertKey(t.Context(), newRecord("key_1", "t"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("insert after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.wait(t, "notice after restart", 2*time.Second)
	l.close(t)
}

// TestPostgresQueryTimeout: a query stuck behind a lock ends at
// QueryTimeout with a technical error, not ErrNotFound.
func TestPostgresQueryTimeout(t *testing.T) {
	u := newSchema(t, testPGURL())
	db := openURL(t, u, Options{QueryTimeout: 200 * time.Millisecond}).(*Postgres)
	r, err := db.InsertKey(t.Context(), newRecord("key_1", "t"))
	if err != nil {
		t.Fatal(err)
	}
	// Hold the key's row lock from another connection.
	conn, err := pgx.Connect(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `SELECT 1 FROM keys WHERE id = $1 FOR UPDATE`, r.ID); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = db.RevokeKey(t.Context(), r.ID, time.Now())
	if err == nil || errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("took %s, want about 200ms", d)
	}
}

var benchOpeners = []struct {
	name string
	open func(b *testing.B) DB
}{
	{"sqlite", func(b *testing.B) DB { return openSQLiteTest(b) }},
	{"postgres", func(b *testing.B) DB { return openPGTest(b) }},
}

// BenchmarkKeyByHash looks up existing keys in a table of 10,000.
func BenchmarkKeyByHash(b *testing.B) {
	for _, bo := range benchOpeners {
		b.Run(bo.name, func(b *testing.B) {
			db := bo.open(b)
			rs := seedRecords("bench", 10000)
			if err := db.(BulkInserter).BulkInsertKeys(b.Context(), rs); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r, err := db.KeyByHash(b.Context(), rs[i%len(rs)].Hash)
				if err != nil {
					b.Fatal(err)
				}
				if r.ID != rs[i%len(rs)].ID {
					b.Fatalf("got %s", r.ID)
				}
				i++
			}
		})
	}
}

// BenchmarkBulkInsertKeys inserts 100,000 keys per operation into a
// growing table; -benchtime=10x loads 1,000,000 (the warm-start seed).
func BenchmarkBulkInsertKeys(b *testing.B) {
	const batch = 100_000
	for _, bo := range benchOpeners {
		b.Run(bo.name, func(b *testing.B) {
			db := bo.open(b)
			bi := db.(BulkInserter)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := bi.BulkInsertKeys(b.Context(), seedRecords(fmt.Sprintf("b%d_", n), batch)); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*batch)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// TestTechnicalErrorsNameTheDatabase: a failure that is no refusal names
// the database once, before the driver's own words, and is never read as
// "not found".
func TestTechnicalErrorsNameTheDatabase(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t testing.TB) DB
	}{
		{"sqlite", openSQLiteTest},
		{"postgres", openPGTest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.open(t)
			db.Close()
			calls := map[string]func() error{
				"KeyByID":   func() error { _, err := db.KeyByID(t.Context(), "key_x"); return err },
				"RevokeKey": func() error { _, err := db.RevokeKey(t.Context(), "key_x", time.Now()); return err },
				"Changes":   func() error { _, err := db.Changes(t.Context(), 0, 0); return err },
				"Ping":      func() error { return db.Ping(t.Context()) },
			}
			for call, f := range calls {
				err := f()
				if err == nil || errors.Is(err, ErrNotFound) {
					t.Fatalf("%s on a closed database: err = %v, want a technical error", call, err)
				}
				if msg := err.Error(); !strings.HasPrefix(msg, tc.name+": ") || strings.Count(msg, tc.name) != 1 || strings.Contains(msg, "store:") {
					t.Errorf("%s: %q, want %q once, first", call, msg, tc.name+": ")
				}
			}
		})
	}
}

// TestOpenErrorsSayWhy: a database that cannot be opened is explained in
// the operating system's or the server's words, not as "unable to open
// database file" or a timeout.
func TestOpenErrorsSayWhy(t *testing.T) {
	ctx := t.Context()
	// /proc refuses new files even to root, so this holds whoever runs it.
	_, err := Open(ctx, "sqlite:/proc/keygate.db", Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot create /proc/keygate.db: directory /proc:") {
		t.Errorf("sqlite in an unwritable directory: %v", err)
	}
	base := testpg.SharedURL()
	u, perr := url.Parse(base)
	if perr != nil {
		t.Fatal(perr)
	}
	u.Path = "/keygate_no_such_database"
	start := time.Now()
	_, err = Open(ctx, u.String(), Options{ConnectTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), `database "keygate_no_such_database" does not exist`) || strings.Contains(err.Error(), "within") {
		t.Errorf("a database that does not exist: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the refusal took %v: it must not wait for the connect timeout", d)
	}
}
