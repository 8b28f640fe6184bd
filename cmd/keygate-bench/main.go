// Command keygate-bench measures Keygate against the physical limit of the
// machine it runs on: in one run it starts, on loopback gRPC listeners in
// this process, a no-op ext_authz server (answers OK at once), Keygate with
// a cached key and the in-process limiter, and Keygate with Redis limits;
// it drives each in turn with the same gRPC load and prints requests/s,
// latency percentiles, CPU and allocations per check, and each server's
// ratio to the no-op one.
//
//	go run ./cmd/keygate-bench                   # closed loop, as fast as possible
//	go run ./cmd/keygate-bench -rate 5000        # open loop at 5,000 checks/s
//	go run ./cmd/keygate-bench -profile /tmp/kg  # pprof of the in-process run
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/policy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keygate-bench:", err)
		}
		os.Exit(2)
	}
}

// Server names, as -servers takes them.
const (
	srvNoop    = "noop"
	srvInProc  = "inproc"
	srvRedis   = "redis"
	allServers = srvNoop + "," + srvInProc + "," + srvRedis
)

var labels = map[string]string{
	srvNoop:   "no-op ext_authz",
	srvInProc: "keygate (in-process limits)",
	srvRedis:  "keygate (redis limits)",
}

// Result is one server's row.
type Result struct {
	Server       string  `json:"server"`
	Label        string  `json:"label"`
	Skipped      string  `json:"skipped,omitempty"` // why there are no numbers
	Checks       uint64  `json:"checks"`
	Denied       uint64  `json:"denied"`
	Errors       uint64  `json:"errors"`
	Seconds      float64 `json:"seconds"`
	RPS          float64 `json:"requests_per_second"`
	P50us        float64 `json:"p50_us"`
	P99us        float64 `json:"p99_us"`
	P999us       float64 `json:"p99_9_us"`
	MaxUs        float64 `json:"max_us"`
	CPUPer10k    float64 `json:"cpu_seconds_per_10k_checks"`
	AllocsPer    float64 `json:"allocs_per_check"`
	RPSRatio     float64 `json:"rps_ratio_to_noop,omitempty"`
	P99Ratio     float64 `json:"p99_ratio_to_noop,omitempty"`
	RedisPer     float64 `json:"redis_calls_per_check,omitempty"`
	RedisErrors  uint64  `json:"redis_errors,omitempty"`
	CacheMisses  uint64  `json:"cache_misses,omitempty"`
	FirstError   string  `json:"first_error,omitempty"`
	redisSkipped bool
}

// Report is the -json output.
type Report struct {
	Mode        string   `json:"mode"` // closed-loop | fixed-rate
	Rate        float64  `json:"rate,omitempty"`
	Concurrency int      `json:"concurrency"`
	Conns       int      `json:"conns"`
	Duration    string   `json:"duration"`
	Warmup      string   `json:"warmup"`
	GOMAXPROCS  int      `json:"gomaxprocs"`
	NumCPU      int      `json:"num_cpu"`
	GoVersion   string   `json:"go_version"`
	Results     []Result `json:"results"`
	Notes       []string `json:"notes"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) ([]Result, error) {
	fs := flag.NewFlagSet("keygate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o loadOpts
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent in-flight checks (workers)")
	fs.IntVar(&o.conns, "conns", 4, "gRPC client connections, shared round-robin by the workers")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured interval per server")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each measured interval")
	fs.Float64Var(&o.rate, "rate", 0, "fixed rate in checks/s (open loop, latency from the scheduled send time); 0: as fast as possible")
	redisURL := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis for the Redis-limits server")
	requireRedis := fs.Bool("require-redis", false, "fail if Redis is unreachable (otherwise its row says so)")
	servers := fs.String("servers", allServers, "which servers to run, in order: "+allServers)
	asJSON := fs.Bool("json", false, "print the results as JSON")
	profileDir := fs.String("profile", "", "write CPU, allocation and mutex profiles of one server's measured run to this directory")
	profileServer := fs.String("profile-server", srvInProc, "the server -profile profiles: "+allServers)
	logTo := fs.String("log", "", "file for Keygate's decision log (JSON, info); default: discarded after formatting")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.concurrency < 1 || o.conns < 1 || o.duration <= 0 || o.warmup < 0 || o.rate < 0 {
		return nil, errors.New("-concurrency and -conns must be ≥ 1, -duration > 0, -warmup and -rate ≥ 0")
	}
	var which []string
	for _, s := range strings.Split(*servers, ",") {
		s = strings.TrimSpace(s)
		if _, ok := labels[s]; !ok {
			return nil, fmt.Errorf("-servers: unknown server %q (want %s)", s, allServers)
		}
		which = append(which, s)
	}
	if _, ok := labels[*profileServer]; !ok {
		return nil, fmt.Errorf("-profile-server: unknown server %q (want one of %s)", *profileServer, allServers)
	}
	logW := io.Discard
	if *logTo != "" {
		f, err := os.Create(*logTo)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		logW = f
	}
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return nil, err
		}
	}

	var results []Result
	runID := fmt.Sprintf("keygate-bench:%d:%d:", os.Getpid(), time.Now().UnixNano())
	for _, name := range which {
		r := Result{Server: name, Label: labels[name]}
		fmt.Fprintf(stderr, "keygate-bench: %s: %s warmup, %s measured…\n", r.Label, o.warmup, o.duration)
		var srv *server
		var err error
		switch name {
		case srvNoop:
			srv, err = startNoop()
		case srvInProc:
			srv, err = startKeygate(ctx, keygateOpts{log: logW})
		case srvRedis:
			if perr := redisReachable(ctx, *redisURL); perr != nil {
				r.Skipped = "redis unreachable"
				r.FirstError = perr.Error()
				r.redisSkipped = true
				results = append(results, r)
				continue
			}
			srv, err = startKeygate(ctx, keygateOpts{log: logW, redisURL: *redisURL, keyPrefix: runID})
		}
		if err != nil {
			return results, fmt.Errorf("%s: %w", r.Label, err)
		}
		var onMeasure func() func()
		if name == *profileServer && *profileDir != "" {
			onMeasure = profiler(*profileDir, stderr)
		}
		s0 := srv.stats()
		m, err := drive(ctx, srv.addr, srv.key, o, onMeasure)
		s1 := srv.stats()
		srv.stop()
		if err != nil {
			return results, fmt.Errorf("%s: %w", r.Label, err)
		}
		fill(&r, m)
		if n := m.checks + m.notOK; n > 0 {
			r.RedisPer = float64(s1.RedisCalls-s0.RedisCalls) / float64(n)
		}
		r.RedisErrors = s1.RedisErrors - s0.RedisErrors
		r.CacheMisses = s1.CacheMisses - s0.CacheMisses
		results = append(results, r)
		// Each server starts from a clean heap.
		runtime.GC()
		debug.FreeOSMemory()
	}
	for i := range results {
		if results[0].Server == srvNoop && results[0].Skipped == "" && results[i].Skipped == "" && i > 0 {
			if results[0].RPS > 0 {
				results[i].RPSRatio = results[i].RPS / results[0].RPS
			}
			if results[0].P99us > 0 {
				results[i].P99Ratio = results[i].P99us / results[0].P99us
			}
		}
	}

	rep := Report{
		Mode: "closed-loop", Rate: o.rate, Concurrency: o.concurrency, Conns: o.conns,
		Duration: o.duration.String(), Warmup: o.warmup.String(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(),
		Results: results, Notes: notes(o, results),
	}
	if o.rate > 0 {
		rep.Mode = "fixed-rate"
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return results, err
		}
	} else {
		printTable(stdout, rep)
	}
	for _, r := range results {
		if r.redisSkipped && *requireRedis {
			return results, fmt.Errorf("redis unreachable at %s: %s", *redisURL, r.FirstError)
		}
	}
	return results, nil
}

func fill(r *Result, m *measured) {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	n := m.checks + m.notOK + m.errors
	r.Checks, r.Denied, r.Errors = m.checks, m.notOK, m.errors
	r.Seconds = m.elapsed.Seconds()
	r.RPS = float64(n) / m.elapsed.Seconds()
	r.P50us, r.P99us, r.P999us = us(m.lat.quantile(0.5)), us(m.lat.quantile(0.99)), us(m.lat.quantile(0.999))
	r.MaxUs = us(time.Duration(m.lat.max))
	if n > 0 {
		r.CPUPer10k = m.cpu.Seconds() / float64(n) * 10_000
		r.AllocsPer = float64(m.mallocs) / float64(n)
	}
	if m.firstErr != nil {
		r.FirstError = m.firstErr.Error()
	}
}

func notes(o loadOpts, results []Result) []string {
	ns := []string{
		fmt.Sprintf("the load generator runs in this process on the same machine (%d CPUs, GOMAXPROCS %d): CPU s/10k and allocs/check are the whole process's (client + server), not Keygate's alone", runtime.NumCPU(), runtime.GOMAXPROCS(0)),
		"servers run one after another on loopback gRPC, each after a GC; ratios are to the no-op server of this run",
		"Keygate logs every decision at info in JSON (to -log, default discarded after formatting), keeps metrics and last_used_at as `keygate serve` does",
	}
	if o.rate > 0 {
		ns = append(ns, fmt.Sprintf("fixed rate %.0f checks/s, open loop: latency is measured from each check's scheduled send time (no coordinated omission)", o.rate))
	} else {
		ns = append(ns, fmt.Sprintf("closed loop: %d workers over %d connections send as fast as answers come back", o.concurrency, o.conns))
	}
	for _, r := range results {
		if r.Denied > 0 || r.Errors > 0 {
			ns = append(ns, fmt.Sprintf("WARNING %s: %d denied, %d errors (first: %s)", r.Label, r.Denied, r.Errors, r.FirstError))
		}
		if r.Server == srvRedis && r.Skipped == "" {
			ns = append(ns, fmt.Sprintf("%s: %.2f Redis calls per check, %d Redis errors", r.Label, r.RedisPer, r.RedisErrors))
		}
		if r.CacheMisses > 0 {
			ns = append(ns, fmt.Sprintf("%s: %d key cache misses during the measured interval", r.Label, r.CacheMisses))
		}
	}
	return ns
}

func fmtUs(us float64) string {
	switch {
	case us >= 10_000:
		return fmt.Sprintf("%.1fms", us/1000)
	case us >= 1000:
		return fmt.Sprintf("%.2fms", us/1000)
	default:
		return fmt.Sprintf("%.0fµs", us)
	}
}

func printTable(w io.Writer, rep Report) {
	if rep.Mode == "fixed-rate" {
		fmt.Fprintf(w, "fixed rate %.0f checks/s, %d workers, %d conns, %s per server (+%s warmup)\n\n", rep.Rate, rep.Concurrency, rep.Conns, rep.Duration, rep.Warmup)
	} else {
		fmt.Fprintf(w, "closed loop, %d workers, %d conns, %s per server (+%s warmup)\n\n", rep.Concurrency, rep.Conns, rep.Duration, rep.Warmup)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\trequests/s\tp50\tp99\tp99.9\tCPU s/10k checks\tallocs/check\trps vs no-op\tp99 vs no-op\t")
	ratio := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", v)
	}
	for _, r := range rep.Results {
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t\n", r.Label, r.Skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%.3f\t%.1f\t%s\t%s\t\n", r.Label, r.RPS,
			fmtUs(r.P50us), fmtUs(r.P99us), fmtUs(r.P999us), r.CPUPer10k, r.AllocsPer, ratio(r.RPSRatio), ratio(r.P99Ratio))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// profiler returns an onMeasure hook that profiles the measured interval:
// cpu.pprof, allocs.pprof with allocs-base.pprof (the allocs profile is
// cumulative: use -base), and mutex.pprof.
func profiler(dir string, stderr io.Writer) func() func() {
	write := func(name string, f func(io.Writer) error) {
		out, err := os.Create(filepath.Join(dir, name))
		if err == nil {
			err = f(out)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "keygate-bench: profile %s: %v\n", name, err)
		}
	}
	return func() func() {
		runtime.GC()
		write("allocs-base.pprof", func(w io.Writer) error { return pprof.Lookup("allocs").WriteTo(w, 0) })
		prevMutex := runtime.SetMutexProfileFraction(100)
		cpu, err := os.Create(filepath.Join(dir, "cpu.pprof"))
		if err == nil {
			err = pprof.StartCPUProfile(cpu)
		}
		if err != nil {
			fmt.Fprintf(stderr, "keygate-bench: cpu profile: %v\n", err)
		}
		return func() {
			if err == nil {
				pprof.StopCPUProfile()
				cpu.Close()
			}
			runtime.GC()
			write("allocs.pprof", func(w io.Writer) error { return pprof.Lookup("allocs").WriteTo(w, 0) })
			write("mutex.pprof", func(w io.Writer) error { return pprof.Lookup("mutex").WriteTo(w, 0) })
			runtime.SetMutexProfileFraction(prevMutex)
			fmt.Fprintf(stderr, "keygate-bench: profiles in %s: go tool pprof -top %s; go tool pprof -top -sample_index=alloc_objects -base %s %s\n",
				dir, filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "allocs-base.pprof"), filepath.Join(dir, "allocs.pprof"))
		}
	}
}

// policyFor is the route policy of the config, as `keygate serve` builds it
// (the bench request names its scope in context_extensions).
func policyFor(cfg config.Config) (*policy.Policy, error) {
	pc := policy.Config{OrgRequired: cfg.Organization.Required, ScopeForm: policy.ScopeForm(cfg.Scopes.Form)}
	return policy.New(pc)
}
