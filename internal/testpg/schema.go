package testpg

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultSharedURL is this machine's PostgreSQL, used unless
// KEYGATE_TEST_DATABASE_URL names another.
const DefaultSharedURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// SharedURL is the shared PostgreSQL server tests use, each in a schema of
// its own.
func SharedURL() string {
	if u := os.Getenv("KEYGATE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultSharedURL
}

// Redact hides a URL's password, for messages.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// NewSchema creates a fresh, empty schema on the PostgreSQL server at base
// and returns a URL whose connections use it; t.Cleanup drops it. An
// unreachable server fails the test: PostgreSQL is part of the test setup.
func NewSchema(t testing.TB, base string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL: -short leaves out the tests that need services or tools; make test runs them")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("PostgreSQL at %s is unreachable; the tests need it (KEYGATE_TEST_DATABASE_URL, default %s): %v", Redact(base), DefaultSharedURL, err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	schema := fmt.Sprintf("kg_test_%x", b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
