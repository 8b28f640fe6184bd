package server

import (
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/limits"
)

// Version is set at build time with
// -ldflags "-X github.com/keygate/keygate/server.Version=v1.2.3".
var Version = "dev"

// BuildInfo says which build is running, for `keygate version` and the
// keygate_build_info metric.
type BuildInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	// Encoder is how responses are encoded: "vtprotobuf" when built with
	// -tags vtprotobuf (the Makefile and the image do), else "reflection".
	Encoder string `json:"encoder"`
}

// ReadBuildInfo reads the running binary's build information.
func ReadBuildInfo() BuildInfo {
	b := BuildInfo{Version: Version, Go: runtime.Version(), Encoder: "reflection"}
	if extauthz.FastEncoding() {
		b.Encoder = "vtprotobuf"
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
		if b.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
	}
	return b
}

// registerStateMetrics exposes the cache's and limiter's state.
func registerStateMetrics(reg prometheus.Registerer, kc *cache.Cache, lim *limits.Limiter) error {
	counter := func(name, help string, f func(cache.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(kc.Stats())) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	overBudget := func(answer string, f func(cache.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_cache_miss_lookups_over_budget_total",
			Help: "Cache misses that found cache.miss_lookups_per_second spent, answered without a query: invalid_api_key " +
				"while the cache held every active key, unavailable (503) while it did not.",
			ConstLabels: prometheus.Labels{"answer": answer}}, func() float64 { return float64(f(kc.Stats())) })
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	cs := []prometheus.Collector{
		counter("keygate_cache_hits_total", "Key lookups answered from the cache.", func(s cache.Stats) uint64 { return s.Hits }),
		counter("keygate_cache_misses_total", "Key lookups that went to the key database.", func(s cache.Stats) uint64 { return s.Misses }),
		counter("keygate_cache_negative_hits_total", "Lookups of unknown keys answered from the cache.", func(s cache.Stats) uint64 { return s.NegativeHits }),
		counter("keygate_cache_stale_serves_total", "Cached keys served while the key database was unreachable.", func(s cache.Stats) uint64 { return s.StaleServes }),
		counter("keygate_database_errors_total", "Failed calls to the key database.", func(s cache.Stats) uint64 { return s.DBErrors }),
		gauge("keygate_database_up", "1 when the key database answered the last refresh.", func() float64 { return b(kc.DBUp()) }),
		gauge("keygate_cache_ready", "1 once the first cache load is done.", func() float64 { return b(kc.Ready()) }),
		gauge("keygate_cache_refresh_lag_seconds", "Seconds since the change feed was last read.", func() float64 {
			if t := kc.Stats().LastRefresh; !t.IsZero() {
				return time.Since(t).Seconds()
			}
			return 0
		}),
		// The budget of database look-ups for misses: keygate_cache_misses_total
		// is what it spent; these count the misses it had no look-up for.
		overBudget("invalid_api_key", func(s cache.Stats) uint64 { return s.OverBudgetUnknown }),
		overBudget("unavailable", func(s cache.Stats) uint64 { return s.OverBudgetUnavailable }),
		gauge("keygate_cache_complete", "1 while the cache holds every active key (a miss is then almost certainly an unknown key).",
			func() float64 { return b(kc.Complete()) }),
		counter("keygate_cache_evictions_total", "Records of active keys pushed out or refused for want of room (cache.max_keys); each makes the cache partial.",
			func(s cache.Stats) uint64 { return s.Evictions }),
		gauge("keygate_cache_negative_entries", "Unknown keys remembered (at most cache.negative_max, 40 bytes each).",
			func() float64 { return float64(kc.NegativeEntries()) }),
	}
	ls := func(f func(limits.Stats) float64) func() float64 { return func() float64 { return f(lim.Stats()) } }
	cs = append(cs,
		gauge("keygate_redis_up", "1 when Redis answers (0 when down or not configured).", ls(func(s limits.Stats) float64 { return b(s.RedisUp) })),
		gauge("keygate_redis_configured", "1 when redis.url is set: keygate_redis_up 0 then means Redis is down.",
			ls(func(s limits.Stats) float64 { return b(s.RedisConfigured) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_redis_errors_total", Help: "Failed Redis calls of the rate limiter."},
			ls(func(s limits.Stats) float64 { return float64(s.RedisErrors) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_ratelimit_local_denials_total", Help: "Over-limit requests denied from the local deny cache, without a Redis call."},
			ls(func(s limits.Stats) float64 { return float64(s.LocalDenials) })),
	)
	bi := ReadBuildInfo()
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "keygate_build_info", Help: "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.Go}})
	info.Set(1)
	cs = append(cs, info)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
