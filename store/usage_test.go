package store

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// The usage tests join the shared suite (runSuite): each runs on SQLite and
// on the real PostgreSQL.

// showUsage renders buckets as "start a/r/d" lines, for comparison.
func showUsage(cs []UsageCount) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%s %s/%s %d/%d/%d\n", c.Start.Format(time.RFC3339), c.KeyID, c.Tenant, c.Allowed, c.RateLimited, c.Denied)
	}
	return b.String()
}

// testUsage: counts add up per key and hour, whatever the batch they come
// in; a key's hours and days and a tenant's sums read back in order,
// within since and until.
func testUsage(t *testing.T, db DB) {
	ctx := t.Context()
	h0 := time.Date(2026, 3, 4, 22, 0, 0, 0, time.UTC)
	add := func(cs ...UsageCount) {
		t.Helper()
		if err := db.AddUsage(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	add(UsageCount{KeyID: "key_a", Tenant: "acme", Start: h0.Add(10 * time.Minute), Allowed: 3, RateLimited: 1},
		UsageCount{KeyID: "key_b", Tenant: "acme", Start: h0, Denied: 2},
		UsageCount{KeyID: "key_c", Tenant: "other", Start: h0, Allowed: 100})
	add(UsageCount{KeyID: "key_a", Tenant: "acme", Start: h0.Add(59 * time.Minute), Allowed: 2, Denied: 5},
		UsageCount{KeyID: "key_a", Tenant: "acme", Start: h0.Add(time.Hour), Allowed: 7},
		UsageCount{KeyID: "key_a", Tenant: "acme", Start: h0.Add(3 * time.Hour), RateLimited: 4}) // the next UTC day
	add() // an empty batch writes nothing
	// In a zone east of UTC: the hour is the same instant.
	add(UsageCount{KeyID: "key_b", Tenant: "acme", Start: h0.In(time.FixedZone("UTC+5:30", 5*3600+1800)).Add(time.Minute), Allowed: 1})

	day0, day1 := "2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z"
	tests := []struct {
		name string
		f    UsageFilter
		want string
	}{
		{"key by hour", UsageFilter{KeyID: "key_a"},
			"2026-03-04T22:00:00Z key_a/ 5/1/5\n2026-03-04T23:00:00Z key_a/ 7/0/0\n2026-03-05T01:00:00Z key_a/ 0/4/0\n"},
		{"key by day", UsageFilter{KeyID: "key_a", Granularity: GranularityDay},
			day0 + " key_a/ 12/1/5\n" + day1 + " key_a/ 0/4/0\n"},
		{"since rounds down to its hour", UsageFilter{KeyID: "key_a", Since: h0.Add(90 * time.Minute)},
			"2026-03-04T23:00:00Z key_a/ 7/0/0\n2026-03-05T01:00:00Z key_a/ 0/4/0\n"},
		{"until's hour counts when it started", UsageFilter{KeyID: "key_a", Since: h0, Until: h0.Add(90 * time.Minute)},
			"2026-03-04T22:00:00Z key_a/ 5/1/5\n2026-03-04T23:00:00Z key_a/ 7/0/0\n"},
		{"until excludes the hour it starts", UsageFilter{KeyID: "key_a", Since: h0, Until: h0.Add(time.Hour)},
			"2026-03-04T22:00:00Z key_a/ 5/1/5\n"},
		{"tenant summed over its keys", UsageFilter{Tenant: "acme"},
			"2026-03-04T22:00:00Z /acme 6/1/7\n2026-03-04T23:00:00Z /acme 7/0/0\n2026-03-05T01:00:00Z /acme 0/4/0\n"},
		{"tenant by day", UsageFilter{Tenant: "acme", Granularity: GranularityDay},
			day0 + " /acme 13/1/7\n" + day1 + " /acme 0/4/0\n"},
		{"other tenant", UsageFilter{Tenant: "other"}, "2026-03-04T22:00:00Z /other 100/0/0\n"},
		{"unknown key", UsageFilter{KeyID: "key_nope"}, ""},
		{"nothing in range", UsageFilter{KeyID: "key_a", Since: h0.Add(48 * time.Hour)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.Usage(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Error("nil buckets; want an empty list")
			}
			if s := showUsage(got); s != tc.want {
				t.Errorf("got\n%swant\n%s", s, tc.want)
			}
		})
	}

	bad := []struct {
		name string
		f    UsageFilter
		want string
	}{
		{"neither key nor tenant", UsageFilter{}, "exactly one"},
		{"both", UsageFilter{KeyID: "key_a", Tenant: "acme"}, "exactly one"},
		{"granularity", UsageFilter{KeyID: "key_a", Granularity: "week"}, `"week" is not hour or day`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := db.Usage(ctx, tc.f); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	if err := db.AddUsage(ctx, []UsageCount{{KeyID: "key_a", Start: h0, Allowed: 1}}); err == nil {
		t.Error("a row without a tenant was added")
	}
}

// testUsageConcurrent: writers adding to the same keys and hours at once
// (as replicas do) lose nothing and do not deadlock, whatever order their
// batches list the keys in.
func testUsageConcurrent(t *testing.T, db DB) {
	ctx := t.Context()
	h0 := UsageHour(time.Now())
	const writers, rounds, nkeys = 4, 10, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				batch := make([]UsageCount, 0, 2*nkeys)
				for i := range nkeys {
					k := i
					if w%2 == 1 {
						k = nkeys - 1 - i // the other order
					}
					for h := range 2 {
						batch = append(batch, UsageCount{KeyID: fmt.Sprintf("key_%02d", k), Tenant: "acme",
							Start: h0.Add(time.Duration(h) * time.Hour), Allowed: 1, RateLimited: 2, Denied: 3})
					}
				}
				if err := db.AddUsage(ctx, batch); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := db.Usage(ctx, UsageFilter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	const n = writers * rounds * nkeys
	want := fmt.Sprintf("%s /acme %d/%d/%d\n%s /acme %d/%d/%d\n",
		h0.Format(time.RFC3339), n, 2*n, 3*n, h0.Add(time.Hour).Format(time.RFC3339), n, 2*n, 3*n)
	if s := showUsage(got); s != want {
		t.Errorf("got\n%swant\n%s", s, want)
	}
}

// testPruneUsage: the hours before the horizon's hour go, the rest stay.
func testPruneUsage(t *testing.T, db DB) {
	ctx := t.Context()
	h0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var batch []UsageCount
	for h := range 5 {
		batch = append(batch, UsageCount{KeyID: "key_a", Tenant: "acme", Start: h0.Add(time.Duration(h) * time.Hour), Allowed: 1})
	}
	if err := db.AddUsage(ctx, batch); err != nil {
		t.Fatal(err)
	}
	n, err := db.PruneUsage(ctx, h0.Add(2*time.Hour+30*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d (%v), want the 2 hours before 02:00", n, err)
	}
	got, err := db.Usage(ctx, UsageFilter{KeyID: "key_a", Granularity: GranularityDay})
	if err != nil || len(got) != 1 || got[0].Allowed != 3 {
		t.Fatalf("after pruning: %s(%v), want 3 hours left", showUsage(got), err)
	}
	if n, err := db.PruneUsage(ctx, h0); err != nil || n != 0 {
		t.Errorf("pruning again: %d, %v", n, err)
	}
}
