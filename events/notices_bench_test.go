package events

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/store"
)

// BenchmarkRateLimited is what a 429 costs the Check path with the
// notices on, for a key already noticed in its window (every 429 but its
// first): one shard lock and a map read.
func BenchmarkRateLimited(b *testing.B) {
	db, err := store.Open(b.Context(), "sqlite:"+filepath.Join(b.TempDir(), "k.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := ParseSecret(testSecret)
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{Endpoints: []Endpoint{{URL: "http://127.0.0.1:9/hook", Secret: s}}}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]keys.Record, 1024)
	for i := range recs {
		recs[i] = keys.Record{ID: fmt.Sprintf("key_%020d", i), Tenant: "acme"}
	}
	w := limits.Window{Limit: 10, Period: time.Hour}
	now := time.Now()
	for _, r := range recs {
		p.RateLimited(r, w, now) // each key's first 429: queued
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.RateLimited(recs[i%len(recs)], w, now)
		i++
	}
	if got := len(p.notices.queue); got != len(recs) {
		b.Fatalf("%d notices queued, want %d", got, len(recs))
	}
}
