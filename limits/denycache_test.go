package limits

import (
	"context"
	"testing"
	"time"
)

// TestDenyCache: a flooding over-limit bucket costs Redis nothing until its
// retry time, counted both by Stats and by a hook on the client.
func TestDenyCache(t *testing.T) {
	t.Parallel()
	plans := map[string][]Window{"p": {{Limit: 3, Period: 3 * time.Second}}}
	l := newRedisLimiter(t, Config{Plans: plans})
	hook := &countHook{}
	l.rdb.AddHook(hook)
	for range 3 {
		if r := mustAllow(t, l, "flood", "p"); !r.Allowed {
			t.Fatal("denied within the burst")
		}
	}
	r := mustAllow(t, l, "flood", "p")
	if r.Allowed {
		t.Fatal("4th of 3 allowed")
	}
	retryAt := time.Now().Add(r.RetryAfter)
	// ristretto applies sets asynchronously: the requests right after the
	// denial may still reach Redis until the set lands (a few, more on a
	// loaded machine), never one per request.
	before := l.Stats()
	const n = 2000
	for range n {
		if r := mustAllow(t, l, "flood", "p"); r.Allowed {
			t.Fatal("allowed while over the limit")
		}
	}
	if d := l.Stats().RedisCalls - before.RedisCalls; d > n/20 {
		t.Fatalf("%d Redis calls for %d requests over the limit, want at most a few", d, n)
	} else {
		t.Logf("%d Redis calls for %d requests right after the denial", d, n)
	}
	// Once the set has landed, none at all.
	l.deny.Wait()
	calls, cmds, lden := l.Stats().RedisCalls, hook.n.Load(), l.Stats().LocalDenials
	for range n {
		r := mustAllow(t, l, "flood", "p")
		if r.Allowed || r.RetryAfter <= 0 || r.Remaining != 0 || r.Limit != 3 {
			t.Fatalf("cached denial = %+v", r)
		}
	}
	if time.Now().After(retryAt) {
		t.Fatal("the flood outlasted the retry time; the test proves nothing")
	}
	if d := l.Stats().RedisCalls - calls; d != 0 {
		t.Fatalf("Stats: %d Redis calls for %d requests over the limit, want 0", d, n)
	}
	if d := hook.n.Load() - cmds; d != 0 {
		t.Fatalf("hook: %d Redis commands for %d requests over the limit, want 0", d, n)
	}
	if d := l.Stats().LocalDenials - lden; d != n {
		t.Fatalf("LocalDenials grew by %d, want %d", d, n)
	}
	// After the retry time the bucket goes to Redis again and is allowed.
	time.Sleep(time.Until(retryAt) + 20*time.Millisecond)
	cmds = hook.n.Load()
	if r := mustAllow(t, l, "flood", "p"); !r.Allowed {
		t.Fatalf("denied after the retry time: %+v", r)
	}
	if hook.n.Load() == cmds {
		t.Fatal("the request after the retry time did not reach Redis")
	}
	// Another bucket is not affected by the first one's denial.
	if r := mustAllow(t, l, "other", "p"); !r.Allowed {
		t.Fatal("another bucket denied")
	}
}

// TestPlanChangeWhileDenied: a bucket denied under one plan and then asked
// under another (a key's plan changed) must not reuse the first plan's
// denial: its window index may not exist in the second plan.
func TestPlanChangeWhileDenied(t *testing.T) {
	t.Parallel()
	plans := map[string][]Window{
		"two": {{Limit: 100, Period: time.Second}, {Limit: 1, Period: time.Hour}},
		"one": {{Limit: 5, Period: 24 * time.Hour}},
	}
	l := newRedisLimiter(t, Config{Plans: plans})
	mustAllow(t, l, "b", "two")
	if r := mustAllow(t, l, "b", "two"); r.Allowed || r.Window != plans["two"][1] {
		t.Fatalf("second request = %+v, want denied by the 1h window", r)
	}
	l.deny.Wait()
	r, err := func() (r Result, err error) {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Allow under the new plan panicked: %v", p)
			}
		}()
		return l.Allow(context.Background(), "b", "one")
	}()
	if err != nil || !r.Allowed || r.Limit != 5 {
		t.Fatalf("under the new plan: %+v, %v; want allowed by its own 5/24h window", r, err)
	}
}
