package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func checkSane(t *testing.T, rs []Result, want ...string) {
	t.Helper()
	if len(rs) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(rs), len(want), rs)
	}
	for i, r := range rs {
		if r.Server != want[i] {
			t.Errorf("result %d is %q, want %q", i, r.Server, want[i])
		}
		if r.RPS <= 0 || r.Checks == 0 {
			t.Errorf("%s: rps %.0f, %d checks: want > 0", r.Label, r.RPS, r.Checks)
		}
		if r.Denied != 0 || r.Errors != 0 {
			t.Errorf("%s: %d denied, %d errors (%s)", r.Label, r.Denied, r.Errors, r.FirstError)
		}
		if r.P50us <= 0 || r.P99us < r.P50us || r.P999us < r.P99us || r.MaxUs < r.P999us {
			t.Errorf("%s: percentiles out of order: p50 %v p99 %v p99.9 %v max %v", r.Label, r.P50us, r.P99us, r.P999us, r.MaxUs)
		}
		if r.CPUPer10k <= 0 || r.AllocsPer <= 0 {
			t.Errorf("%s: CPU s/10k %v, allocs/check %v: want > 0", r.Label, r.CPUPer10k, r.AllocsPer)
		}
		if i > 0 && (r.RPSRatio <= 0 || r.P99Ratio <= 0) {
			t.Errorf("%s: ratios to no-op %v, %v: want > 0", r.Label, r.RPSRatio, r.P99Ratio)
		}
	}
}

func TestHarnessTable(t *testing.T) {
	var out, errOut bytes.Buffer
	rs, err := run(context.Background(), []string{"-duration", "300ms", "-warmup", "50ms", "-concurrency", "4", "-conns", "2",
		"-servers", "noop,noop-raw,inproc"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	checkSane(t, rs, srvNoop, srvNoopRaw, srvInProc)
	table := out.String()
	for _, s := range []string{"requests/s", "p99.9", "allocs/check", labels[srvNoop], labels[srvNoopRaw], labels[srvInProc], "×", "note: the load generator runs in this process"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
	if strings.Contains(table, labels[srvRedis]) {
		t.Errorf("table has the redis row though -servers left it out:\n%s", table)
	}
}

// TestHarnessFixedRateJSON: at a fixed rate the load is open loop: no
// row sends more checks than the schedule called for by the end of its
// measured intervals (a closed loop on this machine sends many times
// more). How many it reaches depends on the machine, and is not tested.
func TestHarnessFixedRateJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	_, err := run(context.Background(), []string{"-duration", "300ms", "-warmup", "50ms", "-concurrency", "4", "-rate", "1000",
		"-servers", "noop,inproc", "-json"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if rep.Mode != "fixed-rate" || rep.Rate != 1000 {
		t.Errorf("mode %q rate %v", rep.Mode, rep.Rate)
	}
	checkSane(t, rep.Results, srvNoop, srvInProc)
	for _, r := range rep.Results {
		sent := r.Checks + r.Denied + r.Errors
		if r.Scheduled == 0 || sent > r.Scheduled {
			t.Errorf("%s: %d checks measured, %d scheduled by the end: an open loop sends no more than its schedule", r.Label, sent, r.Scheduled)
		}
	}
}

// TestHarnessManyKeys runs every server on a many-keys workload with a
// plan of two windows and a private Redis, whose CPU is counted.
func TestHarnessManyKeys(t *testing.T) {
	var out, errOut bytes.Buffer
	rs, err := run(context.Background(), []string{"-duration", "300ms", "-warmup", "50ms", "-concurrency", "8", "-conns", "2", "-rounds", "2",
		"-workload", "uniform", "-keys", "300", "-windows", "2", "-redis-private", "-require-redis",
		"-servers", "noop,inproc,redis", "-json"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	checkSane(t, rs, srvNoop, srvInProc, srvRedis)
	if rep.Workload != "300 keys, uniform, plan of 2 windows" {
		t.Errorf("workload %q", rep.Workload)
	}
	r := rs[2]
	// Two windows per check, far from any limit: in at most one round
	// trip, at most two commands (fewer where a lease answered) unless
	// Redis timed out (-race on a busy machine) and what it spent for
	// the checks that went on without it was given back. The commands
	// sent in the measured interval include those of the checks still
	// waiting for their answer when it ends (at most one a worker), which
	// the checks measured do not count.
	perRound := float64(max(r.Checks, 1)) / 2 // -rounds 2; RedisPer is the rounds' median
	maxPer := 2 + 2*8/perRound                // two commands for each of -concurrency 8
	if r.TripsPer <= 0 || r.TripsPer > 1 || r.RedisPer <= 0 || r.RedisErrors == 0 && r.RedisPer > maxPer {
		t.Errorf("redis row: %.3f commands and %.3f round trips per check, %d Redis errors; want (0, %.3f] and (0, 1]", r.RedisPer, r.TripsPer, r.RedisErrors, maxPer)
	}
	t.Logf("redis row: %.3f commands and %.3f round trips per check, %d Redis errors", r.RedisPer, r.TripsPer, r.RedisErrors)
	if r.RedisCPUus <= 0 || r.CPUus <= r.RedisCPUus || r.CPURatio <= 0 || len(r.ByRound) != 2 || r.ByRound[0].CPURatio <= 0 {
		t.Errorf("redis row: CPU %.1f µs/check, Redis's %.1f, ratio to in-process %.2f, by round %+v: want Redis's CPU counted and compared",
			r.CPUus, r.RedisCPUus, r.CPURatio, r.ByRound)
	}
	for _, x := range rs[:2] {
		if x.CPURatio != 0 || x.TripsPer != 0 {
			t.Errorf("%s: a CPU ratio %.2f or round trips %.2f on a row without Redis", x.Label, x.CPURatio, x.TripsPer)
		}
	}
}

// TestHarnessFlags: bad flags are refused before anything starts.
func TestHarnessFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown workload", []string{"-workload", "hot"}, "-workload"},
		{"one key of many", []string{"-workload", "uniform", "-keys", "1"}, "-keys"},
		{"too many keys", []string{"-workload", "zipf", "-keys", "2000000"}, "-keys"},
		{"flat zipf", []string{"-workload", "zipf", "-zipf-s", "1"}, "-zipf-s"},
		{"three windows", []string{"-windows", "3"}, "-windows"},
		{"unknown server", []string{"-servers", "noop,envoy"}, "-servers"},
		{"stray argument", []string{"now"}, "unexpected arguments"},
		{"trace over 1", []string{"-trace", "1.5"}, "-trace"},
		{"negative trace", []string{"-trace", "-0.01"}, "-trace"},
		{"traced server without -trace", []string{"-servers", "noop,inproc-traced"}, "-trace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			_, err := run(context.Background(), tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run %q: %v, want an error naming %s", tc.args, err, tc.want)
			}
			if out.Len() > 0 {
				t.Errorf("printed a report for bad flags:\n%s", out.String())
			}
		})
	}
}

func TestRedisUnreachable(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"-duration", "100ms", "-warmup", "0s", "-concurrency", "2", "-servers", "noop,redis", "-redis", "redis://127.0.0.1:1/0"}
	rs, err := run(context.Background(), args, &out, &errOut)
	if err != nil {
		t.Fatalf("run without -require-redis: %v", err)
	}
	if len(rs) != 2 || rs[1].Skipped != "redis unreachable" {
		t.Fatalf("results %+v", rs)
	}
	if !strings.Contains(out.String(), "redis unreachable") {
		t.Errorf("table lacks the unreachable row:\n%s", out.String())
	}
	if _, err := run(context.Background(), append(args, "-require-redis"), &out, &errOut); err == nil {
		t.Error("-require-redis with Redis unreachable: want an error")
	}
}

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.01 || diff > 0.01 {
			t.Errorf("q%v = %v, want %v ±1%%", c.q, got, c.want)
		}
	}
	for _, v := range []uint64{0, 1, 127, 128, 255, 256, 1000, 1 << 40, 1<<63 + 12345} {
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d out of range", v, b)
		}
		if mid := valueOf(b); v >= 256 && (float64(mid) < float64(v)*0.99 || float64(mid) > float64(v)*1.01) {
			t.Errorf("value %d lands in bucket %d of midpoint %d", v, b, mid)
		}
	}
}
