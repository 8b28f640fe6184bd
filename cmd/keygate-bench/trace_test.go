package main

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestHarnessTraced: with -trace, each Keygate row gets a traced row right
// after it, compared with it; the traced server's spans reach the run's
// OTLP receiver, the untraced server's do not (sampling everything here,
// so that a run this short exports some).
func TestHarnessTraced(t *testing.T) {
	var out, errOut bytes.Buffer
	rs, err := run(context.Background(), []string{"-duration", "300ms", "-warmup", "50ms", "-concurrency", "4", "-conns", "2",
		"-servers", "noop,inproc", "-trace", "1"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	checkSane(t, rs, srvNoop, srvInProc, srvInProcTraced)
	if r := rs[2]; r.TraceRPSRatio <= 0 || r.TraceP99Ratio <= 0 {
		t.Errorf("traced row's ratios to the untraced %v, %v: want > 0", r.TraceRPSRatio, r.TraceP99Ratio)
	}
	if rs[1].TraceRPSRatio != 0 {
		t.Error("the untraced row has a ratio to itself")
	}
	m := regexp.MustCompile(`the OTLP receiver took (\d+) span`).FindStringSubmatch(errOut.String())
	if m == nil {
		t.Fatalf("no receiver count in:\n%s", errOut.String())
	}
	// Every check of the traced server's warmup and measured interval is a
	// span (the warmup is a sixth of the interval); none of the untraced
	// one's, which would about double the count.
	spans, _ := strconv.ParseUint(m[1], 10, 64)
	if traced := rs[2].Checks; spans < traced || spans > traced*3/2+100 {
		t.Errorf("the receiver took %d spans; the traced row counted %d checks, the untraced %d", spans, traced, rs[1].Checks)
	}
	if table := out.String(); !strings.Contains(table, labels[srvInProcTraced]) || !strings.Contains(table, "the untraced row's") {
		t.Errorf("table lacks the traced row or its comparison:\n%s", table)
	}
}

func TestWithTraced(t *testing.T) {
	got, err := withTraced([]string{srvNoop, srvInProc, srvRedis}, 0.01)
	if want := []string{srvNoop, srvInProc, srvInProcTraced, srvRedis, srvRedisTraced}; err != nil || !slices.Equal(got, want) {
		t.Errorf("withTraced: %v %v, want %v", got, err, want)
	}
	got, err = withTraced([]string{srvInProcTraced, srvInProc}, 0.5)
	if want := []string{srvInProcTraced, srvInProc}; err != nil || !slices.Equal(got, want) {
		t.Errorf("withTraced, traced named: %v %v, want %v", got, err, want)
	}
	got, err = withTraced([]string{srvNoop, srvInProc}, 0)
	if want := []string{srvNoop, srvInProc}; err != nil || !slices.Equal(got, want) {
		t.Errorf("withTraced off: %v %v, want %v", got, err, want)
	}
}
