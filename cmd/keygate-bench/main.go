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
//	go run ./cmd/keygate-bench -workload uniform -windows 2 -redis-private
//	                                             # 10,000 keys, two windows, Redis's CPU counted
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
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/extauthz"
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
	srvNoopRaw = "noop-raw"
	srvInProc  = "inproc"
	srvRedis   = "redis"
	// The default run. noop-raw, on request, is a floor below the no-op:
	// gRPC alone, the request not even decoded.
	allServers   = srvNoop + "," + srvInProc + "," + srvRedis
	knownServers = srvNoop + "," + srvNoopRaw + "," + srvInProc + "," + srvRedis + "," + srvInProcTraced + "," + srvRedisTraced
)

var labels = map[string]string{
	srvNoop:    "no-op ext_authz",
	srvNoopRaw: "no-op, request not decoded",
	srvInProc:  "keygate (in-process limits)",
	srvRedis:   "keygate (redis limits)",
	// trace.go
	srvInProcTraced: "keygate (in-process limits, traced)",
	srvRedisTraced:  "keygate (redis limits, traced)",
}

// Result is one server's row.
type Result struct {
	Server    string  `json:"server"`
	Label     string  `json:"label"`
	Skipped   string  `json:"skipped,omitempty"` // why there are no numbers
	Checks    uint64  `json:"checks"`
	Denied    uint64  `json:"denied"`
	Errors    uint64  `json:"errors"`
	Seconds   float64 `json:"seconds"`
	RPS       float64 `json:"requests_per_second"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	P999us    float64 `json:"p99_9_us"`
	MaxUs     float64 `json:"max_us"`
	CPUPer10k float64 `json:"cpu_seconds_per_10k_checks"` // this process's alone
	// CPUus is CPU per check in µs, this process's and the Redis
	// server's together; RedisCPUus is the Redis server's part.
	CPUus      float64 `json:"cpu_us_per_check"`
	RedisCPUus float64 `json:"redis_cpu_us_per_check"`
	AllocsPer  float64 `json:"allocs_per_check"`
	RPSRatio   float64 `json:"rps_ratio_to_noop,omitempty"`
	P99Ratio   float64 `json:"p99_ratio_to_noop,omitempty"`
	// CPURatio is the Redis row's CPUus over the in-process row's.
	CPURatio    float64 `json:"cpu_ratio_to_inproc,omitempty"`
	RedisPer    float64 `json:"redis_calls_per_check,omitempty"`
	TripsPer    float64 `json:"redis_round_trips_per_check,omitempty"`
	RedisErrors uint64  `json:"redis_errors,omitempty"`
	CacheMisses uint64  `json:"cache_misses,omitempty"`
	// Scheduled is, at a fixed rate, how many checks the schedule called
	// for up to the end of the measured intervals: no more can be sent.
	Scheduled  uint64 `json:"scheduled,omitempty"`
	FirstError string `json:"first_error,omitempty"`
	// TraceRPSRatio and TraceP99Ratio are a traced row's figures over the
	// same server's untraced row (trace.go).
	TraceRPSRatio float64 `json:"rps_ratio_to_untraced,omitempty"`
	TraceP99Ratio float64 `json:"p99_ratio_to_untraced,omitempty"`
	// ByRound holds each round's figures; the fields above are their
	// medians (sums for the counts).
	ByRound      []Round `json:"by_round,omitempty"`
	redisSkipped bool
}

// Round is one server's figures in one round.
type Round struct {
	RPS      float64 `json:"requests_per_second"`
	P99us    float64 `json:"p99_us"`
	RPSRatio float64 `json:"rps_ratio_to_noop,omitempty"`
	P99Ratio float64 `json:"p99_ratio_to_noop,omitempty"`
	CPURatio float64 `json:"cpu_ratio_to_inproc,omitempty"`
}

// Report is the -json output.
type Report struct {
	Mode        string   `json:"mode"` // closed-loop | fixed-rate
	Rate        float64  `json:"rate,omitempty"`
	Concurrency int      `json:"concurrency"`
	Conns       int      `json:"conns"`
	Rounds      int      `json:"rounds"`
	Decode      string   `json:"decode"`
	Workload    string   `json:"workload"`
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
	fs.IntVar(&o.rounds, "rounds", 3, "rounds: each runs every server once, in turn; rows are medians over rounds, ratios the median of each round's ratio")
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent in-flight checks (workers)")
	fs.IntVar(&o.conns, "conns", 4, "gRPC client connections, shared round-robin by the workers")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured interval per server")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each measured interval")
	fs.Float64Var(&o.rate, "rate", 0, "fixed rate in checks/s (open loop, latency from the scheduled send time); 0: as fast as possible")
	fs.StringVar(&o.decode, "decode", decodeStatus, "how the client handles messages: status (each worker's request encoded once; of each response, the codes read and the rest stepped over, so the client costs the same whatever the server answers) or full (protobuf-go both ways on every call)")
	redisURL := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis for the Redis-limits server")
	redisPrivate := fs.Bool("redis-private", false, "start a redis-server of this run's own (redis-server on PATH) instead of -redis, so that the Redis CPU counted is the run's alone")
	fs.StringVar(&o.work.name, "workload", workloadOne, "which keys the checks carry: "+workloadOne+" (one key), "+workloadUniform+" (-keys keys, each as likely) or "+workloadZipf+" (-keys keys, Zipf-distributed)")
	fs.IntVar(&o.work.keys, "keys", 10_000, "keys of the "+workloadUniform+" and "+workloadZipf+" workloads")
	fs.Float64Var(&o.work.zipfS, "zipf-s", 1.1, "exponent of the "+workloadZipf+" workload (> 1; larger: fewer keys take more of the checks)")
	fs.IntVar(&o.work.windows, "windows", 1, "windows of the keys' plan: 1 (an hour) or 2 (an hour and a day)")
	requireRedis := fs.Bool("require-redis", false, "fail if Redis is unreachable (otherwise its row says so)")
	servers := fs.String("servers", allServers, "which servers to run, in order, of "+knownServers+"; ratios are to the first if it is noop")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	profileDir := fs.String("profile", "", "write CPU, allocation and mutex profiles of one server's measured run to this directory")
	profileServer := fs.String("profile-server", srvInProc, "the server -profile profiles: one of "+knownServers)
	traceRatio := fs.Float64("trace", 0, "also run each Keygate with traces on, sampling this ratio (0.01: 1%) of checks, exported over OTLP/gRPC to an in-process receiver that discards them; 0: tracing off only")
	pipelineWindow := fs.Duration("pipeline-window", 0, "Keygate's redis.pipeline_window: how long a pipeline may wait for more checks' commands (0: the config's default)")
	pipelineLimit := fs.Int("pipeline-limit", 0, "Keygate's redis.pipeline_limit: the most commands in one pipeline (0: the config's default)")
	logTo := fs.String("log", "", "file for Keygate's decision log (JSON, info); default: discarded after formatting")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.decode != decodeStatus && o.decode != decodeFull {
		return nil, fmt.Errorf("-decode: %q is neither %s nor %s", o.decode, decodeStatus, decodeFull)
	}
	if *pipelineWindow < 0 || *pipelineLimit < 0 {
		return nil, errors.New("-pipeline-window and -pipeline-limit must be ≥ 0 (0: the config's default)")
	}
	if err := o.work.validate(); err != nil {
		return nil, err
	}
	if o.concurrency < 1 || o.conns < 1 || o.rounds < 1 || o.duration <= 0 || o.warmup < 0 || o.rate < 0 {
		return nil, errors.New("-concurrency, -conns and -rounds must be ≥ 1, -duration > 0, -warmup and -rate ≥ 0")
	}
	var which []string
	for _, s := range strings.Split(*servers, ",") {
		s = strings.TrimSpace(s)
		if _, ok := labels[s]; !ok {
			return nil, fmt.Errorf("-servers: unknown server %q (want of %s)", s, knownServers)
		}
		which = append(which, s)
	}
	if *traceRatio < 0 || *traceRatio > 1 {
		return nil, fmt.Errorf("-trace: %v is not a ratio between 0 and 1", *traceRatio)
	}
	var err error
	if which, err = withTraced(which, *traceRatio); err != nil {
		return nil, err
	}
	if _, ok := labels[*profileServer]; !ok {
		return nil, fmt.Errorf("-profile-server: unknown server %q (want one of %s)", *profileServer, knownServers)
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

	results, err := measureAll(ctx, which, o, benchOpts{
		rounds: o.rounds, redisURL: *redisURL, redisPrivate: *redisPrivate, log: logW,
		profileDir: *profileDir, profileServer: *profileServer, stderr: stderr, trace: *traceRatio,
		pipelineWindow: *pipelineWindow, pipelineLimit: *pipelineLimit,
	})
	if err != nil {
		return results, err
	}

	rep := Report{
		Mode: "closed-loop", Rate: o.rate, Concurrency: o.concurrency, Conns: o.conns, Rounds: o.rounds, Decode: o.decode, Workload: o.work.String(),
		Duration: o.duration.String(), Warmup: o.warmup.String(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(),
		Results: results, Notes: append(notes(o, results), traceNotes(results, *traceRatio)...),
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
	r.Scheduled = m.scheduled
	if n > 0 {
		r.CPUPer10k = m.cpu.Seconds() / float64(n) * 10_000
		r.CPUus = us(m.cpu+m.redisCPU) / float64(n)
		r.RedisCPUus = us(m.redisCPU) / float64(n)
		r.AllocsPer = float64(m.mallocs) / float64(n)
	}
	if m.firstErr != nil {
		r.FirstError = m.firstErr.Error()
	}
}

func notes(o loadOpts, results []Result) []string {
	ns := []string{
		fmt.Sprintf("the load generator runs in this process on the same machine (%d CPUs, GOMAXPROCS %d): CPU/check and allocs/check are the whole process's (client + server), not Keygate's alone", runtime.NumCPU(), runtime.GOMAXPROCS(0)),
		"workload: " + o.work.String() + "; every check is allowed",
		fmt.Sprintf("servers run in turn on loopback gRPC, each run after a GC, %d round(s); each row is the median of its rounds, each ratio the median of the ratios to the no-op run of the same round", o.rounds),
		"Keygate logs every decision at info in JSON (to -log, default discarded after formatting), keeps metrics and last_used_at as `keygate serve` does",
	}
	if !extauthz.FastEncoding() {
		ns = append(ns, "WARNING built without -tags vtprotobuf: servers encode responses by reflection (make loadtest sets the tag)")
	}
	if o.decode == decodeStatus {
		ns = append(ns, "-decode status: each worker encodes its CheckRequest once and reads of each response the gRPC status, allowed or denied and a denial's HTTP status, stepping over the rest: the client costs the same whatever the server answers (-decode full: protobuf-go both ways)")
	} else {
		ns = append(ns, "-decode full: the client encodes each CheckRequest and decodes each response with protobuf-go, costs Envoy's C++ does not have")
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
		if len(r.ByRound) > 1 && r.RPSRatio > 0 {
			var rps, p99 []string
			for _, rd := range r.ByRound {
				rps = append(rps, fmt.Sprintf("%.2f×", rd.RPSRatio))
				p99 = append(p99, fmt.Sprintf("%.2f×", rd.P99Ratio))
			}
			ns = append(ns, fmt.Sprintf("%s by round: rps vs no-op %s; p99 vs no-op %s", r.Label, strings.Join(rps, " "), strings.Join(p99, " ")))
		}
		if r.Server == srvRedis && r.Skipped == "" {
			ns = append(ns, fmt.Sprintf("%s: %.2f Redis commands and %.3f round trips per check, %d Redis errors", r.Label, r.RedisPer, r.TripsPer, r.RedisErrors))
			if r.RedisCPUus > 0 {
				ns = append(ns, fmt.Sprintf("%s: CPU/check includes the Redis server's, %.1f µs of it (INFO cpu before and after each measured interval; a shared Redis counts its other clients' work too: -redis-private starts one for the run)", r.Label, r.RedisCPUus))
			}
			if len(r.ByRound) > 1 && r.CPURatio > 0 {
				var cpu []string
				for _, rd := range r.ByRound {
					cpu = append(cpu, fmt.Sprintf("%.2f×", rd.CPURatio))
				}
				ns = append(ns, fmt.Sprintf("%s by round: CPU/check vs in-process %s", r.Label, strings.Join(cpu, " ")))
			}
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
		fmt.Fprintf(w, "fixed rate %.0f checks/s, %d workers, %d conns, %d round(s) of %s per server (+%s warmup)\n\n", rep.Rate, rep.Concurrency, rep.Conns, rep.Rounds, rep.Duration, rep.Warmup)
	} else {
		fmt.Fprintf(w, "closed loop, %d workers, %d conns, %d round(s) of %s per server (+%s warmup)\n\n", rep.Concurrency, rep.Conns, rep.Rounds, rep.Duration, rep.Warmup)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "workload: %s\n\n", rep.Workload)
	fmt.Fprintln(tw, "server\trequests/s\tp50\tp99\tp99.9\tCPU µs/check\tof it Redis\tallocs/check\trps vs no-op\tp99 vs no-op\tCPU vs in-process\t")
	ratio := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", v)
	}
	for _, r := range rep.Results {
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t\t\t\n", r.Label, r.Skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t\n", r.Label, r.RPS,
			fmtUs(r.P50us), fmtUs(r.P99us), fmtUs(r.P999us), r.CPUus, r.RedisCPUus, r.AllocsPer, ratio(r.RPSRatio), ratio(r.P99Ratio), ratio(r.CPURatio))
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
