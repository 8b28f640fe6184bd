package testpg

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartStopStart(t *testing.T) {
	began := time.Now()
	s := Start(t)
	t.Logf("initdb and start took %s", time.Since(began).Round(time.Millisecond))
	ctx := context.Background()

	query := func() error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, s.URL())
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, `CREATE TABLE IF NOT EXISTS t (n int); INSERT INTO t VALUES (1)`)
		return err
	}
	if err := query(); err != nil {
		t.Fatalf("query running server: %v", err)
	}

	s.Stop()
	if err := query(); err == nil {
		t.Fatal("query succeeded against a stopped server")
	}
	s.Stop() // idempotent

	began = time.Now()
	s.Start()
	t.Logf("restart took %s", time.Since(began).Round(time.Millisecond))
	if err := query(); err != nil {
		t.Fatalf("query restarted server: %v", err)
	}
	c, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows kept across restart: %d, %v; want 2", n, err)
	}
}
