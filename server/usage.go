package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/usage"
)

// registerUsageMetrics exposes the usage recorder's state: how much waits
// to be written and how often writing failed. Never per key: a key id as
// a label would grow the series with the key table.
func registerUsageMetrics(reg prometheus.Registerer, rec *usage.Recorder) error {
	st := func(f func(usage.Stats) float64) func() float64 { return func() float64 { return f(rec.Stats()) } }
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_usage_pending",
			Help: "Key-hours of usage counts held in memory, not yet written (grows while the key database is down)."},
			st(func(s usage.Stats) float64 { return float64(s.Pending) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_usage_flush_failures_total",
			Help: "Failed writes of usage counts or last_used_at; what they held is kept for the next flush."},
			st(func(s usage.Stats) float64 { return float64(s.FlushFailures) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_usage_rows_written_total",
			Help: "Key-hours of usage counts written to the key database."},
			st(func(s usage.Stats) float64 { return float64(s.Written) })),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
