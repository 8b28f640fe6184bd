package limits

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNewValidation(t *testing.T) {
	t.Parallel()
	ok := map[string][]Window{"ok": {{Limit: 1, Period: time.Second}}}
	cases := []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"no plans", Config{}, "plans: at least one plan"},
		{"empty plan", Config{Plans: map[string][]Window{"x": {}}}, "plans.x: needs at least one window"},
		{"zero limit", Config{Plans: map[string][]Window{"x": {{Limit: 1, Period: time.Second}, {Limit: 0, Period: time.Hour}}}}, "plans.x[1].limit"},
		{"negative limit", Config{Plans: map[string][]Window{"x": {{Limit: -5, Period: time.Second}}}}, "plans.x[0].limit"},
		{"sub-second period", Config{Plans: map[string][]Window{"x": {{Limit: 1, Period: time.Second}, {Limit: 1, Period: 500 * time.Millisecond}}}}, "plans.x[1].period"},
		{"fractional period", Config{Plans: map[string][]Window{"x": {{Limit: 1, Period: 1500 * time.Millisecond}}}}, "plans.x[0].period"},
		{"zero period", Config{Plans: map[string][]Window{"x": {{Limit: 1, Period: 0}}}}, "plans.x[0].period"},
		{"bad mode", Config{Plans: ok, OnRedisError: "sometimes"}, "limits.on_redis_error"},
		{"bad scheme", Config{Plans: ok, RedisURL: "http://127.0.0.1:6379"}, "redis.url"},
		{"bad port", Config{Plans: ok, RedisURL: "redis://127.0.0.1:notaport/0"}, "redis.url"},
		{"bad db", Config{Plans: ok, RedisURL: "redis://127.0.0.1:6379/x"}, "redis.url"},
		{"sentinel without master", Config{Plans: ok, RedisURL: "redis+sentinel://127.0.0.1:26379"}, "master_name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(tc.cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				l.Close()
				t.Fatalf("New succeeded, want an error naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v\nwant an error naming %q", err, tc.want)
			}
		})
	}
	if _, err := New(Config{Plans: ok}, nil); err == nil {
		t.Error("New without a logger succeeded")
	}
}

func TestRedisURLForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		url     string
		addrs   []string
		cluster bool
		master  string
		db      int
		tls     bool
	}{
		{url: "redis://127.0.0.1:6379/0", addrs: []string{"127.0.0.1:6379"}},
		{url: "redis://user:pw@10.0.0.1:6380/3", addrs: []string{"10.0.0.1:6380"}, db: 3},
		{url: "rediss://cache.example:6379", addrs: []string{"cache.example:6379"}, tls: true},
		{url: "redis+cluster://10.0.0.1:7000?addr=10.0.0.2:7001&addr=10.0.0.3:7002",
			addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001", "10.0.0.3:7002"}, cluster: true},
		{url: "rediss+cluster://10.0.0.1:7000", addrs: []string{"10.0.0.1:7000"}, cluster: true, tls: true},
		{url: "redis+sentinel://10.0.0.1:26379?master_name=mymaster&addr=10.0.0.2:26379",
			addrs: []string{"10.0.0.1:26379", "10.0.0.2:26379"}, master: "mymaster"},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			o, err := universalOptions(tc.url)
			if err != nil {
				t.Fatalf("universalOptions: %v", err)
			}
			if strings.Join(o.Addrs, ",") != strings.Join(tc.addrs, ",") || o.IsClusterMode != tc.cluster ||
				o.MasterName != tc.master || o.DB != tc.db || (o.TLSConfig != nil) != tc.tls {
				t.Fatalf("got addrs=%v cluster=%v master=%q db=%d tls=%v; want %v %v %q %d %v",
					o.Addrs, o.IsClusterMode, o.MasterName, o.DB, o.TLSConfig != nil, tc.addrs, tc.cluster, tc.master, tc.db, tc.tls)
			}
			// New accepts it without I/O.
			l, err := New(Config{Plans: map[string][]Window{"p": {{Limit: 1, Period: time.Second}}}, RedisURL: tc.url}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if st := l.Stats(); !st.RedisConfigured || !st.RedisUp {
				t.Errorf("Stats = %+v, want Redis configured and presumed up", st)
			}
			l.Close()
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	l, err := New(Config{Plans: map[string][]Window{"p": {{Limit: 1, Period: time.Second}}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := l.cfg
	if c.OnRedisError != ModeLocal || c.Timeout != 50*time.Millisecond || c.KeyPrefix != "keygate:" ||
		c.DenyCacheSize != 100_000 || c.ProbeInterval != 500*time.Millisecond || c.Now == nil {
		t.Errorf("defaults = %+v", c)
	}
	if st := l.Stats(); st.RedisConfigured || st.RedisUp {
		t.Errorf("Stats without Redis = %+v", st)
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
}
