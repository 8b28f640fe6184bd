package main

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// TestPicker: uniform picks cover the keys evenly; Zipf picks favour the
// first keys, the first most; both stay in range and differ by worker.
func TestPicker(t *testing.T) {
	const keys, draws = 1000, 200_000
	cases := []struct {
		name string
		work workload
		// check sees how often each key was picked
		check func(t *testing.T, counts []int)
	}{
		{"uniform", workload{name: workloadUniform, keys: keys, windows: 1}, func(t *testing.T, counts []int) {
			want := float64(draws) / keys
			for k, n := range counts {
				if math.Abs(float64(n)-want) > 6*math.Sqrt(want) {
					t.Fatalf("key %d picked %d times, want about %.0f", k, n, want)
				}
			}
		}},
		{"zipf", workload{name: workloadZipf, keys: keys, zipfS: 1.1, windows: 1}, func(t *testing.T, counts []int) {
			if counts[0] < counts[1] || counts[1] < counts[10] || counts[10] < counts[500] {
				t.Fatalf("picks %d, %d, %d, %d of keys 0, 1, 10, 500: want the first favoured", counts[0], counts[1], counts[10], counts[500])
			}
			// P(k) ∝ (k+1)^-s: key 0 over key 1 is 2^1.1.
			if r := float64(counts[0]) / float64(counts[1]); r < 1.9 || r > 2.4 {
				t.Fatalf("key 0 picked %.2f× as often as key 1, want about 2.14", r)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			counts := make([]int, keys)
			a, b := tc.work.picker(0), tc.work.picker(1)
			same := 0
			for range draws {
				k, other := a(), b()
				if k < 0 || k >= keys || other < 0 || other >= keys {
					t.Fatalf("picked %d and %d of %d keys", k, other, keys)
				}
				if k == other {
					same++
				}
				counts[k]++
			}
			if same == draws {
				t.Fatal("two workers pick the same keys")
			}
			tc.check(t, counts)
		})
	}
	if p := (workload{name: workloadOne, windows: 1}).picker(3); p() != 0 {
		t.Error("the one-key workload picked another key")
	}
}

func TestWorkloadPlans(t *testing.T) {
	for _, windows := range []int{1, 2} {
		w := workload{name: workloadOne, windows: windows}
		ws := w.plans()[benchPlan]
		if len(ws) != windows || ws[0].Period != time.Hour || windows == 2 && ws[1].Period != 24*time.Hour {
			t.Errorf("%d windows: plan %v", windows, ws)
		}
		if !strings.Contains(w.String(), fmt.Sprintf("%d window", windows)) {
			t.Errorf("%d windows: described as %q", windows, w)
		}
	}
}

func TestParseRedisCPU(t *testing.T) {
	cases := []struct {
		name string
		info string
		want time.Duration
		ok   bool
	}{
		{"redis 7", "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.0\r\nused_cpu_user_children:9.0\r\nused_cpu_sys_main_thread:1.0\r\n", 3750 * time.Millisecond, true},
		{"microseconds", "used_cpu_sys:0.000001\nused_cpu_user:0.000002\n", 3 * time.Microsecond, true},
		{"no user", "used_cpu_sys:1.0\r\n", 0, false},
		{"not a number", "used_cpu_sys:x\r\nused_cpu_user:1\r\n", 0, false},
		{"negative", "used_cpu_sys:-1\r\nused_cpu_user:1\r\n", 0, false},
		{"empty", "", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRedisCPU(tc.info)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("parseRedisCPU = %v, %v; want %v, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
}

// FuzzParseRedisCPU: whatever INFO says, the parser answers without
// panicking; a reply it accepts is never negative, and the two fields
// written out are read back to the microsecond.
func FuzzParseRedisCPU(f *testing.F) {
	f.Add("used_cpu_sys:1.5\r\nused_cpu_user:2.25\r\n", 1.5, 2.25)
	f.Add("# CPU\r\nused_cpu_sys:\r\n", 0.0, 0.0)
	f.Fuzz(func(t *testing.T, info string, sys, user float64) {
		if got, err := parseRedisCPU(info); err == nil && got < 0 {
			t.Fatalf("parseRedisCPU(%q) = %v", info, got)
		}
		if !(sys >= 0 && sys < 1e6 && user >= 0 && user < 1e6) {
			return
		}
		written := fmt.Sprintf("# CPU\r\nused_cpu_sys:%.6f\r\nused_cpu_user:%.6f\r\n", sys, user)
		got, err := parseRedisCPU(written)
		want := time.Duration((math.Round(sys*1e6) + math.Round(user*1e6)) * 1e3)
		if err != nil || (got-want).Abs() > 2*time.Microsecond {
			t.Fatalf("parseRedisCPU(%q) = %v, %v; want %v", written, got, err, want)
		}
	})
}
