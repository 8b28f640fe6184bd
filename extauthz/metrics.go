package extauthz

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the decision counters and latency histogram of Check. The
// per-code counters are resolved once so the hot path does no label lookup.
type Metrics struct {
	decisions [numCodes]prometheus.Counter
	latency   prometheus.Histogram
	logErrors prometheus.Counter
}

// NewMetrics registers the server's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_decisions_total",
		Help: "Authorization decisions by outcome code (ok or a denial code).",
	}, []string{"code"})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keygate_check_duration_seconds",
		Help:    "Time to decide one authorization request, from request to response.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	})
	logErrs := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keygate_log_errors_total",
		Help: "Decision log lines that could not be written.",
	})
	for _, c := range []prometheus.Collector{vec, lat, logErrs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &Metrics{latency: lat, logErrors: logErrs}
	for _, c := range Codes() {
		m.decisions[c] = vec.WithLabelValues(c.String())
	}
	return m, nil
}

func (m *Metrics) observe(c Code, seconds float64) {
	if m == nil {
		return
	}
	m.decisions[c].Inc()
	m.latency.Observe(seconds)
}

func (m *Metrics) logError() {
	if m != nil {
		m.logErrors.Inc()
	}
}
