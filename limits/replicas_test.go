package limits

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// hammer calls Allow from g goroutines, n times each, and returns how many
// were allowed; any error fails the test.
func hammer(t testing.TB, l *Limiter, bucket, plan string, g, n int) int64 {
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for range n {
				r, err := l.Allow(context.Background(), bucket, plan)
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return allowed.Load()
}

// TestReplicasShareLimit: two Limiters with their own clients (two
// replicas) hammering one bucket together allow exactly the limit of the
// tightest window of a long plan, never more.
func TestReplicasShareLimit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		plan []Window
		want int64
	}{
		{"single", []Window{{Limit: 40, Period: time.Hour}}, 40},
		{"multi", []Window{{Limit: 60, Period: time.Hour}, {Limit: 25, Period: 24 * time.Hour}}, 25},
		{"multi reversed", []Window{{Limit: 25, Period: 24 * time.Hour}, {Limit: 60, Period: time.Hour}}, 25},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plans := map[string][]Window{"p": tc.plan}
			a := newRedisLimiter(t, Config{Plans: plans})
			b := newRedisLimiter(t, Config{Plans: plans, KeyPrefix: a.cfg.KeyPrefix})
			var got [2]int64
			var wg sync.WaitGroup
			for i, l := range []*Limiter{a, b} {
				wg.Go(func() { got[i] = hammer(t, l, "shared", "p", 8, 15) })
			}
			wg.Wait()
			if got[0]+got[1] != tc.want {
				t.Fatalf("two replicas allowed %d + %d = %d, want exactly %d", got[0], got[1], got[0]+got[1], tc.want)
			}
		})
	}
}

const helperEnv = "KEYGATE_LIMITS_HELPER" // prefix for TestHelperProcess

// TestHelperProcess is the second Keygate process of TestTwoProcesses; it
// does nothing unless that test started it.
func TestHelperProcess(t *testing.T) {
	prefix := os.Getenv(helperEnv)
	if prefix == "" {
		return
	}
	l, err := New(Config{Plans: twoProcessPlans, RedisURL: testredis.SharedURL(), KeyPrefix: prefix,
		OnRedisError: ModeClosed, Timeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Start together with the parent: wait for its signal file.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(os.Getenv(helperEnv + "_GO")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no start signal")
		}
	}
	fmt.Printf("allowed=%d\n", hammer(t, l, "shared", "p", 8, 40))
}

var twoProcessPlans = map[string][]Window{"p": {{Limit: 100, Period: time.Hour}, {Limit: 150, Period: 24 * time.Hour}}}

// TestTwoProcesses: two Keygate processes sharing one Redis (this test
// binary, re-executed) never allow more than the limit together.
func TestTwoProcesses(t *testing.T) {
	t.Parallel()
	l := newRedisLimiter(t, Config{Plans: twoProcessPlans})
	goFile := t.TempDir() + "/go"
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+l.cfg.KeyPrefix, helperEnv+"_GO="+goFile)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Let the child connect, then start both at once.
	time.Sleep(100 * time.Millisecond)
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mine := hammer(t, l, "shared", "p", 8, 40)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper process: %v\n%s\n%s", err, out.String(), stderr.String())
	}
	var theirs int64 = -1
	for line := range strings.Lines(out.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "allowed="); ok {
			theirs, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if theirs < 0 {
		t.Fatalf("helper process printed no count:\n%s", out.String())
	}
	if mine+theirs != 100 {
		t.Fatalf("two processes allowed %d + %d = %d, want exactly 100", mine, theirs, mine+theirs)
	}
	t.Logf("this process allowed %d, the other %d", mine, theirs)
	if mine == 0 || theirs == 0 {
		t.Logf("one process got everything (%d, %d): the runs did not overlap much", mine, theirs)
	}
}
