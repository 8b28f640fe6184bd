package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/keygate/keygate/internal/otlprecv"
)

// The traced servers: Keygate as inproc and redis, with traces on.
const (
	srvInProcTraced = "inproc-traced"
	srvRedisTraced  = "redis-traced"
)

// untraced maps each traced server to the one it is compared with.
var untraced = map[string]string{srvInProcTraced: srvInProc, srvRedisTraced: srvRedis}

// withTraced adds, with -trace, each traced server right after its
// untraced one when the list has it and not already the traced one; it
// refuses a traced server without -trace.
func withTraced(which []string, ratio float64) ([]string, error) {
	var out []string
	for _, s := range which {
		if _, ok := untraced[s]; ok && ratio == 0 {
			return nil, fmt.Errorf("-servers: %s needs -trace (the sampling ratio)", s)
		}
		out = append(out, s)
	}
	if ratio == 0 {
		return out, nil
	}
	var res []string
	for _, s := range out {
		res = append(res, s)
		for t, u := range untraced {
			if s == u && !strings.Contains(","+strings.Join(out, ",")+",", ","+t+",") {
				res = append(res, t)
			}
		}
	}
	return res, nil
}

// traceEnv is the environment a traced Keygate starts with: the standard
// OTEL_* variables, as an operator sets them, pointing at the run's OTLP
// receiver (gRPC), with the root sampler at ratio (requests from the load
// generator carry no traceparent).
func traceEnv(recv *otlprecv.Receiver, ratio float64) map[string]string {
	return map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": recv.GRPCEndpoint(),
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     strconv.FormatFloat(ratio, 'g', -1, 64),
		"OTEL_SDK_DISABLED":           "false",
		"OTEL_TRACES_EXPORTER":        "otlp",
	}
}

// setEnv sets vars in this process's environment, where Keygate reads
// them while it starts (server.New reads them, Run starts the exporter),
// and returns what puts the environment back. The servers start one after
// another, so only the traced ones see these.
func setEnv(vars map[string]string) (restore func()) {
	old := map[string]*string{}
	for k, v := range vars {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		os.Setenv(k, v)
	}
	return func() {
		for k, prev := range old {
			if prev == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *prev)
			}
		}
	}
}

// untracedEnv is what every other Keygate of the run starts with: traces
// off, whatever the harness's own environment says.
var untracedEnv = map[string]string{"OTEL_SDK_DISABLED": "true"}

// traceRatios sets a traced row's ratios to its untraced row: the median
// of each round's ratio, as for the ratios to the no-op.
func traceRatios(r *Result, rounds, base []Result) {
	var rps, p99 []float64
	for k, x := range rounds {
		if k < len(base) && base[k].RPS > 0 && base[k].P99us > 0 {
			rps = append(rps, x.RPS/base[k].RPS)
			p99 = append(p99, x.P99us/base[k].P99us)
		}
	}
	r.TraceRPSRatio, r.TraceP99Ratio = medianOf(rps), medianOf(p99)
}

func traceNotes(results []Result, ratio float64) []string {
	if ratio == 0 {
		return nil
	}
	ns := []string{fmt.Sprintf("traced rows: Keygate with OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=%g (the checks carry no traceparent: "+
		"the ratio decides), spans batched and exported over OTLP/gRPC to an in-process receiver that discards them; untraced rows: OTEL_SDK_DISABLED=true", ratio)}
	for _, r := range results {
		if r.TraceRPSRatio > 0 {
			ns = append(ns, fmt.Sprintf("%s: requests/s %.3f× and p99 %.3f× the untraced row's (median of the rounds' ratios)", r.Label, r.TraceRPSRatio, r.TraceP99Ratio))
		}
	}
	return ns
}
