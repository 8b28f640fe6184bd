package cache

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	for _, c := range []struct {
		name      string
		perSecond int64
	}{
		{"one", 1},
		{"ten", 10},
		{"default", DefaultMissLookups},
		{"million", 1_000_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBudget(c.perSecond)
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			// A second's worth at once, then nothing at the same instant.
			for i := range c.perSecond {
				if b.spent(now) || !b.take(now) {
					t.Fatalf("look-up %d of a burst of %d refused", i+1, c.perSecond)
				}
			}
			if !b.spent(now) || b.take(now) {
				t.Fatal("look-up beyond the burst allowed")
			}
			// One look-up comes back per 1/perSecond.
			now += int64(time.Second) / c.perSecond
			if !b.take(now) || b.take(now) {
				t.Fatal("want exactly one look-up after one interval")
			}
			// After a quiet second, the whole burst again, not more.
			now += int64(time.Second)
			n := int64(0)
			for b.take(now) {
				n++
			}
			if n != c.perSecond {
				t.Fatalf("%d look-ups after a quiet second, want %d", n, c.perSecond)
			}
		})
	}
}

// TestBudgetConcurrent: callers racing at one instant share the burst
// exactly, none lost to a lost compare-and-swap and none extra.
func TestBudgetConcurrent(t *testing.T) {
	b := newBudget(1000)
	now := time.Now().UnixNano()
	var got atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if b.take(now) {
					got.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got.Load() != 1000 {
		t.Fatalf("%d look-ups taken by racing callers, want 1000", got.Load())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{MaxKeys: 10, NegativeTTL: time.Minute, PollInterval: time.Second, QueryTimeout: time.Second}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no capacity", func(c *Config) { c.MaxKeys = 0 }, "MaxKeys"},
		{"negative negative_max", func(c *Config) { c.NegativeMax = -1 }, "NegativeMax"},
		{"negative budget", func(c *Config) { c.MissLookups = -1 }, "MissLookups"},
		{"no negative TTL", func(c *Config) { c.NegativeTTL = 0 }, "NegativeTTL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.edit(&cfg)
			if _, err := New(cfg, &counting{}, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error naming %s", err, c.want)
			}
		})
	}
	kc, err := New(good, &counting{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	if kc.NegativeCapacity() < DefaultNegativeMax || kc.cfg.MissLookups != DefaultMissLookups {
		t.Fatalf("zero fields: negative capacity %d, budget %d; want the defaults", kc.NegativeCapacity(), kc.cfg.MissLookups)
	}
}
