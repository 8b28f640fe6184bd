package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/keygate/keygate/internal/otlprecv"
)

// benchOpts are the run's settings besides the load.
type benchOpts struct {
	rounds        int
	redisURL      string
	redisPrivate  bool      // start a redis-server of the run's own
	log           io.Writer // Keygate's decision log
	profileDir    string    // "": no profiles
	profileServer string
	stderr        io.Writer
	trace         float64 // the traced servers' sampling ratio
	// The Redis pipeline's window and size cap (config's
	// redis.pipeline_window and redis.pipeline_limit).
	pipelineWindow time.Duration
	pipelineLimit  int
}

// measureAll starts every server, then drives them in turn, round after
// round. Interleaving matters on a shared machine: a slow spell of the host
// lands on a round of each server rather than on all of one server's runs,
// and the per-round ratios (each to the no-op run next to it) stay steady
// while the absolute figures drift.
func measureAll(ctx context.Context, which []string, o loadOpts, b benchOpts) ([]Result, error) {
	results := make([]Result, len(which))
	servers := make([]*server, len(which))
	var recv *otlprecv.Receiver // traces of the traced servers
	defer func() {
		for _, srv := range servers {
			if srv != nil {
				srv.stop() // a traced server flushes its spans here
			}
		}
		if recv != nil {
			recv.Close()
			fmt.Fprintf(b.stderr, "keygate-bench: the OTLP receiver took %d span(s)\n", recv.Received())
		}
	}()
	runID := fmt.Sprintf("keygate-bench:%d:%d:", os.Getpid(), time.Now().UnixNano())
	hasRedis := slices.Contains(which, srvRedis) || slices.Contains(which, srvRedisTraced)
	if b.redisPrivate && hasRedis {
		url, stop, err := startPrivateRedis(ctx)
		if err != nil {
			return results, err
		}
		defer stop()
		b.redisURL = url
	}
	// Redis's CPU is counted in every row, so the rows stay comparable
	// (with a private Redis only the Redis row moves it).
	var redisCPU func() (time.Duration, error)
	if hasRedis && redisReachable(ctx, b.redisURL) == nil {
		read, closeReader, err := redisCPUReader(b.redisURL)
		if err != nil {
			return results, err
		}
		defer closeReader()
		if _, err := read(); err == nil {
			redisCPU = read
		}
	}
	if slices.Contains(which, srvInProcTraced) || slices.Contains(which, srvRedisTraced) {
		var err error
		if recv, err = otlprecv.Start(otlprecv.Config{Discard: true}); err != nil {
			return results, err
		}
	}
	var seeded *keyDB
	if slices.ContainsFunc(which, func(s string) bool { return s != srvNoop && s != srvNoopRaw }) {
		fmt.Fprintf(b.stderr, "keygate-bench: seeding %d key(s)…\n", o.work.keyCount())
		var err error
		if seeded, err = seedKeyDB(ctx, o.work); err != nil {
			return results, err
		}
		defer seeded.remove()
	}
	for i, name := range which {
		results[i] = Result{Server: name, Label: labels[name]}
		var err error
		switch name {
		case srvNoop:
			servers[i], err = startNoop()
		case srvNoopRaw:
			servers[i], err = startNoopRaw()
		case srvInProc, srvInProcTraced:
			env := untracedEnv
			if name == srvInProcTraced {
				env = traceEnv(recv, b.trace)
			}
			servers[i], err = startKeygate(ctx, keygateOpts{log: b.log, work: o.work, keys: seeded, env: env})
		case srvRedis, srvRedisTraced:
			if perr := redisReachable(ctx, b.redisURL); perr != nil {
				results[i].Skipped = "redis unreachable"
				results[i].FirstError = perr.Error()
				results[i].redisSkipped = true
				continue
			}
			env := untracedEnv
			if name == srvRedisTraced {
				env = traceEnv(recv, b.trace)
			}
			servers[i], err = startKeygate(ctx, keygateOpts{log: b.log, redisURL: b.redisURL, keyPrefix: runID + name + ":", work: o.work, keys: seeded, env: env,
				pipelineWindow: b.pipelineWindow, pipelineLimit: b.pipelineLimit})
		}
		if err != nil {
			return results, fmt.Errorf("%s: %w", results[i].Label, err)
		}
		if (name == srvNoop || name == srvNoopRaw) && seeded != nil {
			// The same requests to every server: the client's cost (a
			// request per key to read from memory) stays out of the ratios.
			servers[i].keys = seeded.keys
		}
	}

	rounds := make([][]Result, len(which))
	for round := 1; round <= b.rounds; round++ {
		for i, srv := range servers {
			if srv == nil {
				continue
			}
			r := Result{Server: which[i], Label: labels[which[i]]}
			fmt.Fprintf(b.stderr, "keygate-bench: round %d/%d: %s: %s warmup, %s measured…\n", round, b.rounds, r.Label, o.warmup, o.duration)
			var onMeasure func() func()
			if round == 1 && which[i] == b.profileServer && b.profileDir != "" {
				onMeasure = profiler(b.profileDir, b.stderr)
			}
			m, err := drive(ctx, srv.addr, srv.keys, o, probes{onMeasure: onMeasure, redisCPU: redisCPU, stats: srv.stats})
			if err != nil {
				return results, fmt.Errorf("%s: %w", r.Label, err)
			}
			fill(&r, m)
			if n := m.checks + m.notOK; n > 0 {
				r.RedisPer = float64(m.stats.RedisCalls) / float64(n)
				r.TripsPer = float64(m.stats.RedisRoundTrips) / float64(n)
			}
			r.RedisErrors = m.stats.RedisErrors
			r.CacheMisses = m.stats.CacheMisses
			rounds[i] = append(rounds[i], r)
			// Each run starts from a clean heap.
			runtime.GC()
			debug.FreeOSMemory()
		}
	}

	noop, inproc := -1, slices.Index(which, srvInProc)
	if len(which) > 0 && which[0] == srvNoop && servers[0] != nil {
		noop = 0
	}
	for i := range results {
		if servers[i] == nil {
			continue
		}
		var base, cpuBase []Result
		if noop >= 0 && i != noop {
			base = rounds[noop]
		}
		if which[i] == srvRedis && inproc >= 0 && servers[inproc] != nil {
			cpuBase = rounds[inproc]
		}
		combine(&results[i], rounds[i], base, cpuBase)
		if u := slices.Index(which, untraced[which[i]]); u >= 0 && servers[u] != nil {
			traceRatios(&results[i], rounds[i], rounds[u])
		}
	}
	return results, nil
}

// combine sets r to the medians of its rounds (counts summed, max the
// largest), with each round's ratios to the no-op run of the same round
// and, given inproc, its CPU per check to the in-process run's.
func combine(r *Result, rounds, noop, inproc []Result) {
	median := func(f func(Result) float64) float64 {
		vs := make([]float64, len(rounds))
		for i, x := range rounds {
			vs[i] = f(x)
		}
		return medianOf(vs)
	}
	for k, x := range rounds {
		r.Checks += x.Checks
		r.Denied += x.Denied
		r.Errors += x.Errors
		r.Seconds += x.Seconds
		r.RedisErrors += x.RedisErrors
		r.Scheduled += x.Scheduled
		r.CacheMisses += x.CacheMisses
		r.MaxUs = max(r.MaxUs, x.MaxUs)
		if r.FirstError == "" {
			r.FirstError = x.FirstError
		}
		rd := Round{RPS: x.RPS, P99us: x.P99us}
		if noop != nil && noop[k].RPS > 0 && noop[k].P99us > 0 {
			rd.RPSRatio = x.RPS / noop[k].RPS
			rd.P99Ratio = x.P99us / noop[k].P99us
		}
		if inproc != nil && inproc[k].CPUus > 0 {
			rd.CPURatio = x.CPUus / inproc[k].CPUus
		}
		r.ByRound = append(r.ByRound, rd)
	}
	r.RPS = median(func(x Result) float64 { return x.RPS })
	r.P50us = median(func(x Result) float64 { return x.P50us })
	r.P99us = median(func(x Result) float64 { return x.P99us })
	r.P999us = median(func(x Result) float64 { return x.P999us })
	r.CPUPer10k = median(func(x Result) float64 { return x.CPUPer10k })
	r.AllocsPer = median(func(x Result) float64 { return x.AllocsPer })
	r.RedisPer = median(func(x Result) float64 { return x.RedisPer })
	r.TripsPer = median(func(x Result) float64 { return x.TripsPer })
	r.CPUus = median(func(x Result) float64 { return x.CPUus })
	r.RedisCPUus = median(func(x Result) float64 { return x.RedisCPUus })
	if inproc != nil {
		cpu := make([]float64, len(r.ByRound))
		for k, rd := range r.ByRound {
			cpu[k] = rd.CPURatio
		}
		r.CPURatio = medianOf(cpu)
	}
	if noop != nil {
		rps := make([]float64, len(r.ByRound))
		p99 := make([]float64, len(r.ByRound))
		for k, rd := range r.ByRound {
			rps[k], p99[k] = rd.RPSRatio, rd.P99Ratio
		}
		r.RPSRatio, r.P99Ratio = medianOf(rps), medianOf(p99)
	}
}

func medianOf(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}
