// Package limits enforces per-key rate limits: GCRA (the generic cell rate
// algorithm) over every window of a key's plan, shared by all replicas
// through Redis (github.com/go-redis/redis_rate), or kept in process when
// no Redis is configured or, by choice, while Redis is down.
//
// On Redis, every window of a check is spent in the same round trip, and
// the checks that arrive together share it: their commands leave as one
// pipeline (one per node on a Cluster), after a short window or once a
// size cap is reached, whichever comes first. A check waits for its
// answer no longer than the Redis timeout.
//
// Redis URLs: redis://[user:pass@]host:port/db or rediss:// (one server);
// redis+cluster://host:port?addr=host2:port&addr=host3:port (a Cluster;
// rediss+cluster:// with TLS); redis+sentinel://host:port?master_name=NAME
// &addr=host2:port (Sentinel). The query parameters are go-redis's.
package limits

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/keygate/keygate/tracing"
)

// Errors Allow returns.
var (
	// ErrUnavailable: Redis is down and the mode is closed.
	ErrUnavailable = errors.New("limits: rate-limit store unavailable")
	// ErrUnknownPlan: the key's plan is not configured.
	ErrUnknownPlan = errors.New("limits: unknown plan")
	// ErrNoTenant: a plan with per-tenant windows was asked for a key
	// without a tenant.
	ErrNoTenant = errors.New("limits: no tenant for a per-tenant window")
)

// Window is one limit of a plan: Limit requests per Period, with a burst of
// Limit (a fresh key may spend its whole window at once), counted per key
// lineage or, with Per set to PerTenant, shared by all the keys of a tenant
// on the plan.
type Window struct {
	Limit  int
	Period time.Duration
	Per    Per // "" is PerKey
}

// Per says who shares a window's bucket.
type Per string

// The values of a window's per.
const (
	PerKey    Per = "key"    // each key lineage has its own bucket
	PerTenant Per = "tenant" // the keys of a tenant on the plan share one
)

// Tenant reports whether the window is shared by a tenant's keys.
func (w Window) Tenant() bool { return w.Per == PerTenant }

// Name renders the window for the RateLimit headers: the period, "1h",
// "24h", "1m", "30s", prefixed with "tenant-" for a per-tenant window.
func (w Window) Name() string {
	return string(w.AppendName(make([]byte, 0, 16)))
}

// AppendName appends the window's Name to b.
func (w Window) AppendName(b []byte) []byte {
	if w.Tenant() {
		b = append(b, "tenant-"...)
	}
	p := w.Period
	switch {
	case p%time.Hour == 0:
		return append(strconv.AppendInt(b, int64(p/time.Hour), 10), 'h')
	case p%time.Minute == 0:
		return append(strconv.AppendInt(b, int64(p/time.Minute), 10), 'm')
	}
	return append(strconv.AppendInt(b, int64(p/time.Second), 10), 's')
}

// Mode is what happens while Redis is unreachable.
type Mode string

// The modes of limits.on_redis_error.
const (
	ModeLocal  Mode = "local"  // in-process GCRA, per replica
	ModeOpen   Mode = "open"   // allow
	ModeClosed Mode = "closed" // deny with 503
)

// Config configures a Limiter.
type Config struct {
	Plans        map[string][]Window
	RedisURL     string // empty: in-process only
	OnRedisError Mode
	Timeout      time.Duration // per Redis call; default 50ms
	KeyPrefix    string        // default "keygate:"
	// DenyCacheSize bounds how many over-limit buckets are remembered
	// locally (default 100,000).
	DenyCacheSize int64
	// ProbeInterval paces Redis health probes while it is down (default 500ms).
	ProbeInterval time.Duration
	// LeaseMax is the most requests taken from Redis in one round trip for
	// a bucket far from its limit, handed out locally until used or
	// LeaseTTL passes (default 32; 1 turns leasing off). Unused ones are
	// lost, so across replicas a bucket is only ever allowed fewer
	// requests than its limit, never more.
	LeaseMax int
	LeaseTTL time.Duration // default 100ms
	// PipelineWindow is how long a batch of concurrent checks' Redis
	// commands may wait for more to join it, while checks come faster
	// than one per round trip (default 0: a batch leaves as soon as the
	// one before it is answered); PipelineLimit is the most commands in
	// one pipeline, which also sends a batch before its window ends
	// (default 128).
	PipelineWindow time.Duration
	PipelineLimit  int
	// Tracer, if set, traces each wait for Redis as a child of the
	// caller's span (when that is recorded); nil: no spans.
	Tracer trace.Tracer
	Now    func() time.Time
}

// WindowState is one window's state after a request.
type WindowState struct {
	Window    Window
	Remaining int
	Reset     time.Duration // until the window is full again
}

// Result is the answer for one request.
type Result struct {
	Allowed bool
	// Window is the tightest window: the one that denied, or the one with
	// the fewest requests remaining.
	Window     Window
	Limit      int
	Remaining  int
	Reset      time.Duration
	RetryAfter time.Duration // > 0 when denied
	Windows    []WindowState // every window, plan order
	// Unknown is set when Redis was down and the mode is open: the request
	// is allowed but no state is known.
	Unknown bool
}

// Stats are the limiter's counters, read by the metrics endpoint.
type Stats struct {
	RedisConfigured bool
	RedisUp         bool
	RedisErrors     uint64
	LocalDenials    uint64 // answered from the deny cache, no Redis call
	RedisCalls      uint64 // commands sent to Redis
	// RedisRoundTrips counts the pipelines sent (on a Cluster, each is
	// one pipeline per node, sent side by side).
	RedisRoundTrips uint64
}

type plan struct {
	name    string
	windows []Window
	args    []gcraArgs // per window, for redis_rate's script
	policy  string     // RateLimit-Policy value
	// tenant is set when some windows are per tenant; the in-process
	// limiter then spends the key's and the tenant's windows in two
	// buckets, keyPart's and tenantPart's (keyPart nil without per-key
	// windows). See split.
	tenant              bool
	keyPart, tenantPart *plan
	idx                 []int // a part's windows' places in its whole plan
}

// Limiter enforces plans. It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	log   *slog.Logger
	plans map[string]*plan
	local *local

	rdb     redis.UniversalClient
	pipe    *pipeline
	up      atomic.Bool
	errs    atomic.Uint64
	lden    atomic.Uint64
	nextTry atomic.Int64 // unix nanos: when a down Redis may be tried again
	// upAt is when Redis was last found reachable (unix nanos): a call
	// that began before it and fails belongs to the outage already over
	// (a dial started then), and must not mark the recovered Redis down.
	upAt atomic.Int64
	deny *ristretto.Cache[string, denial]
	// denyUntil is the latest end of any denial cached (unix nanos):
	// before it the deny cache is asked, after it no entry can be live,
	// and an allowed-only flow skips the lookup.
	denyUntil atomic.Int64
	leases    leases
}

type denial struct {
	until  int64 // unix nanos
	plan   *plan // the plan that denied; another plan's request ignores it
	window int   // index of the denying window in plan
}

// New validates cfg (its plans by ValidatePlans) and connects lazily to
// Redis (no I/O here).
func New(cfg Config, log *slog.Logger) (*Limiter, error) {
	if log == nil {
		return nil, errors.New("limits: logger is required")
	}
	if cfg.OnRedisError == "" {
		cfg.OnRedisError = ModeLocal
	}
	switch cfg.OnRedisError {
	case ModeLocal, ModeOpen, ModeClosed:
	default:
		return nil, fmt.Errorf("limits.on_redis_error: %q is not local, open or closed", cfg.OnRedisError)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 50 * time.Millisecond
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "keygate:"
	}
	if cfg.DenyCacheSize <= 0 {
		cfg.DenyCacheSize = 100_000
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = 500 * time.Millisecond
	}
	if cfg.LeaseMax <= 0 {
		cfg.LeaseMax = 32
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 100 * time.Millisecond
	}
	if cfg.PipelineLimit <= 0 {
		cfg.PipelineLimit = 128
	}
	if cfg.PipelineWindow < 0 {
		return nil, fmt.Errorf("limits: pipeline window must not be negative, got %v", cfg.PipelineWindow)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if gcraErr != nil {
		return nil, gcraErr
	}
	if err := ValidatePlans(cfg.Plans); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, log: log, plans: make(map[string]*plan, len(cfg.Plans))}
	l.leases.init()
	for name, ws := range cfg.Plans {
		l.plans[name] = newPlan(name, ws)
	}
	l.local = newLocal(cfg.Now)
	if cfg.RedisURL != "" {
		opts, err := universalOptions(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		// RESP2: Keygate needs none of RESP3's push messages, and go-redis
		// looks for them before every reply it reads on a RESP3 connection.
		opts.Protocol, opts.DisableIdentity = 2, true
		// Fail fast: a retry or a long dial would stall Check.
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = cfg.Timeout*4, cfg.Timeout, cfg.Timeout
		opts.PoolTimeout = cfg.Timeout
		opts.MaxRetries = -1
		// One dial attempt: go-redis otherwise dials five times with
		// backoffs, holding the pipeline (and every check queued behind
		// it) for half a second while Redis is down; the probe in Run
		// finds it again.
		opts.DialerRetries = 1
		opts.ContextTimeoutEnabled = true
		deny, err := ristretto.NewCache(&ristretto.Config[string, denial]{
			NumCounters: cfg.DenyCacheSize * 10, MaxCost: cfg.DenyCacheSize, BufferItems: 64, IgnoreInternalCost: true,
		})
		if err != nil {
			return nil, fmt.Errorf("limits: deny cache: %w", err)
		}
		l.deny = deny
		l.rdb = redis.NewUniversalClient(opts)
		l.up.Store(true)
		l.pipe = newPipeline(l.rdb, log, pipelineConfig{
			window: cfg.PipelineWindow, limit: cfg.PipelineLimit, timeout: cfg.Timeout,
			scripts: []string{gcraSrc, refundScript}, onAbandoned: l.refundAbandoned,
		})
	}
	return l, nil
}

// universalOptions reads the URL forms in the package doc.
func universalOptions(raw string) (*redis.UniversalOptions, error) {
	switch {
	case strings.HasPrefix(raw, "redis+cluster://"), strings.HasPrefix(raw, "rediss+cluster://"):
		o, err := redis.ParseClusterURL(strings.Replace(raw, "+cluster", "", 1))
		if err != nil {
			return nil, err
		}
		return &redis.UniversalOptions{Addrs: o.Addrs, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig, IsClusterMode: true}, nil
	case strings.HasPrefix(raw, "redis+sentinel://"), strings.HasPrefix(raw, "rediss+sentinel://"):
		o, err := redis.ParseFailoverURL(strings.Replace(raw, "+sentinel", "", 1))
		if err != nil {
			return nil, err
		}
		if o.MasterName == "" {
			return nil, errors.New("a Sentinel URL needs ?master_name=NAME")
		}
		return &redis.UniversalOptions{Addrs: o.SentinelAddrs, MasterName: o.MasterName, Username: o.Username, Password: o.Password,
			SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword, DB: o.DB, TLSConfig: o.TLSConfig}, nil
	case strings.HasPrefix(raw, "redis://"), strings.HasPrefix(raw, "rediss://"):
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}, nil
	}
	return nil, errors.New("want redis://, rediss://, redis+cluster:// or redis+sentinel://")
}

// Plan returns a plan's windows.
func (l *Limiter) Plan(name string) ([]Window, bool) {
	p, ok := l.plans[name]
	if !ok {
		return nil, false
	}
	return p.windows, true
}

// PolicyOf returns a plan's RateLimit-Policy value, rendered once.
func (l *Limiter) PolicyOf(name string) string {
	if p, ok := l.plans[name]; ok {
		return p.policy
	}
	return ""
}

// PolicyFor returns a plan's RateLimit-Policy value for a key of tenant:
// PolicyOf, with the tenant as the partition key of each per-tenant window.
func (l *Limiter) PolicyFor(name, tenant string) string {
	p, ok := l.plans[name]
	if !ok {
		return ""
	}
	if !p.tenant {
		return p.policy
	}
	return string(AppendPolicy(make([]byte, 0, len(p.policy)+32), p.windows, tenant))
}

// Allow spends one request of plan for bucket (a key's lineage); the plan
// must have no per-tenant windows (see AllowFor).
func (l *Limiter) Allow(ctx context.Context, bucket, planName string) (Result, error) {
	return l.AllowFor(ctx, bucket, "", planName)
}

// AllowFor spends one request of plan for bucket (a key's lineage) in the
// plan's per-key windows and for tenant in its per-tenant ones: in all of
// them or, when one denies, in none.
func (l *Limiter) AllowFor(ctx context.Context, bucket, tenant, planName string) (Result, error) {
	p, ok := l.plans[planName]
	if !ok {
		return Result{}, fmt.Errorf("%w: %q", ErrUnknownPlan, planName)
	}
	var tb string // the tenant's bucket, only for plans that have one
	if p.tenant {
		if tenant == "" {
			return Result{}, fmt.Errorf("%w: plan %q", ErrNoTenant, planName)
		}
		tb = tenantBucket(tenant, planName)
	}
	return l.allow(ctx, bucket, tb, p)
}

func (l *Limiter) allow(ctx context.Context, bucket, tb string, p *plan) (Result, error) {
	if l.rdb == nil {
		return l.local.allowPlan(bucket, tb, p), nil
	}
	now := l.cfg.Now()
	if now.UnixNano() < l.denyUntil.Load() {
		if d, ok := l.deny.Get(bucket); ok && d.plan == p && now.UnixNano() < d.until {
			l.lden.Add(1)
			return deniedLocally(p, d, now), nil
		}
		if p.tenant {
			if d, ok := l.deny.Get(tb); ok && d.plan == p && now.UnixNano() < d.until {
				l.lden.Add(1)
				return deniedLocally(p, d, now), nil
			}
		}
	}
	if !l.redisUsable(now) {
		return l.fallback(bucket, tb, p)
	}
	res, ok, n := l.leases.take(bucket, p, now.UnixNano(), l.cfg.LeaseMax)
	if ok {
		return res, nil
	}
	res, err := l.allowRedis(ctx, bucket, tb, p, n)
	if err == nil && !res.Allowed && n > 1 {
		// The batch did not fit: near the limit, go exact.
		n = 1
		res, err = l.allowRedis(ctx, bucket, tb, p, 1)
	}
	if err == nil {
		l.leases.put(bucket, p, res, n, now.UnixNano(), now.Add(l.cfg.LeaseTTL).UnixNano())
		if res.Allowed && n > 1 {
			// This request is one of the n taken: the other n-1 still count
			// as remaining to the client.
			res.Remaining += n - 1
			for i := range res.Windows {
				res.Windows[i].Remaining += n - 1
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		l.markDown(err, now)
		return l.fallback(bucket, tb, p)
	}
	if !l.up.Load() {
		l.markUp(now) // tried as the probe (no Run loop), and it answered
	}
	if !res.Allowed && res.RetryAfter > 0 {
		idx := 0
		for i, w := range p.windows {
			if w == res.Window {
				idx = i
				break
			}
		}
		until := now.Add(res.RetryAfter).UnixNano()
		for {
			old := l.denyUntil.Load()
			if old >= until || l.denyUntil.CompareAndSwap(old, until) {
				break
			}
		}
		// A tenant's window is remembered for all its keys.
		at := bucket
		if p.windows[idx].Tenant() {
			at = tb
		}
		l.deny.SetWithTTL(at, denial{until: until, plan: p, window: idx}, 1, res.RetryAfter)
	}
	return res, nil
}

func deniedLocally(p *plan, d denial, now time.Time) Result {
	w := p.windows[d.window]
	retry := time.Duration(d.until - now.UnixNano())
	return Result{Allowed: false, Window: w, Limit: w.Limit, Remaining: 0, Reset: retry, RetryAfter: retry,
		Windows: []WindowState{{Window: w, Remaining: 0, Reset: retry}}}
}

// redisKey puts the bucket in a hash tag so all windows of one bucket live
// in one Cluster slot. A tenant's bucket (tenantBucket) is a hash tag of
// its own, "{t:TENANT}:PLAN", so tenants spread over a Cluster too.
func (l *Limiter) redisKey(bucket string, w Window) string {
	if w.Tenant() {
		return l.cfg.KeyPrefix + bucket + ":" + w.Name()
	}
	return l.cfg.KeyPrefix + "{" + bucket + "}:" + w.Name()
}

// allowRedis spends n requests in each window of p, all windows in one
// pipeline (with whatever other checks queued meanwhile). If a window
// denies, or fails, the windows that were spent get their requests back
// (refundScript: GCRA's theoretical arrival time is additive, so this
// undoes exactly our cost) in the next pipeline, so a denied request
// spends nothing. Each spend is atomic in Redis, so no window ever allows
// more than its limit, whatever other replicas do; a spend that is given
// back can only make a concurrent request see less quota, never more.
//
// A plan with per-tenant windows touches two hash slots, the key's and the
// tenant's; each command names one key, so on a Cluster each goes to its
// own node's pipeline, and the refund of a denial reaches both.
func (l *Limiter) allowRedis(ctx context.Context, bucket, tb string, p *plan, n int) (Result, error) {
	o := l.pipe.newOp()
	for i, w := range p.windows {
		b := bucket
		if w.Tenant() {
			b = tb
		}
		o.cmds = append(o.cmds, gcraCmd(l.redisKey(b, w), &p.args[i], n))
	}
	var span trace.Span
	if l.cfg.Tracer != nil { // the options cost allocations: only when tracing
		_, span = tracing.Child(ctx, l.cfg.Tracer, "redis gcra", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", "EVALSHA"),
				attribute.Int("db.operation.batch.size", len(o.cmds)), attribute.Int("keygate.ratelimit.requests", n)))
	}
	err := l.pipe.do(ctx, o, l.cfg.Timeout)
	tracing.End(span, err)
	if err != nil {
		// What Redis answers later is given back by refundAbandoned.
		return Result{}, fmt.Errorf("redis: %w", err)
	}
	defer l.pipe.release(o)
	states := make([]WindowState, len(p.windows))
	var failed error
	denied := -1
	var retry time.Duration
	for i, w := range p.windows {
		r, err := gcraAnswer(o.cmds[i])
		switch {
		case err != nil:
			failed = cmp.Or(failed, err)
		case r.Allowed == 0:
			states[i] = WindowState{Window: w, Remaining: 0, Reset: r.ResetAfter}
			// The window that lets the client back in last is the answer.
			if denied < 0 || r.RetryAfter > retry {
				denied, retry = i, r.RetryAfter
			}
		default:
			states[i] = WindowState{Window: w, Remaining: r.Remaining, Reset: r.ResetAfter}
		}
	}
	if failed != nil || denied >= 0 {
		l.refund(o.cmds)
	}
	if failed != nil {
		return Result{}, fmt.Errorf("redis: %w", failed)
	}
	if denied >= 0 {
		for i, c := range o.cmds {
			if r, _ := gcraReply(c); r.Allowed > 0 {
				// Spent and given back: as it was before the request.
				w := p.windows[i]
				states[i].Remaining += n
				states[i].Reset = max(states[i].Reset-time.Duration(n)*(w.Period/time.Duration(w.Limit)), 0)
			}
		}
		w := p.windows[denied]
		return Result{Allowed: false, Window: w, Limit: w.Limit, Remaining: 0, Reset: states[denied].Reset,
			RetryAfter: max(retry, time.Millisecond), Windows: states}, nil
	}
	return tightest(states), nil
}

// refund queues, without waiting, the refunds of the GCRA commands in
// cmds that Redis allowed.
func (l *Limiter) refund(cmds []redis.Cmder) {
	o := l.pipe.newOp()
	for _, c := range cmds {
		if r, ok := gcraReply(c); ok && r.Allowed > 0 {
			o.cmds = append(o.cmds, refundCmd(c))
		}
	}
	if len(o.cmds) == 0 {
		l.pipe.release(o)
		return
	}
	l.pipe.send(o)
}

// refundAbandoned gives back what Redis spent for a check that stopped
// waiting (its deadline passed) and answered without Redis.
func (l *Limiter) refundAbandoned(o *op) { l.refund(o.cmds) }

// tightest builds an allowed Result whose headline window is the one with
// the fewest requests remaining.
func tightest(states []WindowState) Result {
	best := 0
	for i, s := range states {
		if s.Remaining < states[best].Remaining {
			best = i
		}
	}
	s := states[best]
	return Result{Allowed: true, Window: s.Window, Limit: s.Window.Limit, Remaining: s.Remaining, Reset: s.Reset, Windows: states}
}

func (l *Limiter) fallback(bucket, tb string, p *plan) (Result, error) {
	switch l.cfg.OnRedisError {
	case ModeOpen:
		w := p.windows[0]
		return Result{Allowed: true, Window: w, Limit: w.Limit, Remaining: w.Limit, Unknown: true}, nil
	case ModeClosed:
		return Result{}, ErrUnavailable
	}
	return l.local.allowPlan(bucket, tb, p), nil
}

// redisUsable reports whether to call Redis: yes while it is up; while it
// is down, only the Run loop's probe (or, without Run, one caller per probe
// interval) tries it.
func (l *Limiter) redisUsable(now time.Time) bool {
	if l.up.Load() {
		return true
	}
	next := l.nextTry.Load()
	if now.UnixNano() < next {
		return false
	}
	return l.nextTry.CompareAndSwap(next, now.Add(l.cfg.ProbeInterval).UnixNano())
}

// markDown records a failed Redis call that began at started.
func (l *Limiter) markDown(err error, started time.Time) {
	l.errs.Add(1)
	if started.UnixNano() < l.upAt.Load() {
		return
	}
	l.nextTry.Store(l.cfg.Now().Add(l.cfg.ProbeInterval).UnixNano())
	if l.up.Swap(false) {
		l.log.Error("redis unreachable; rate limits fall back", slog.String("on_redis_error", string(l.cfg.OnRedisError)), slog.Any("error", err))
	}
}

func (l *Limiter) markUp(now time.Time) {
	l.upAt.Store(now.UnixNano())
	if !l.up.Swap(true) {
		l.log.Info("redis reachable again; rate limits are shared across replicas again")
	}
}

// Run probes Redis once at start — a Redis that is down from the start is
// said at once, in the log and /metrics, rather than at the first check —
// then probes a down Redis until ctx ends, so recovery does not wait for
// traffic.
func (l *Limiter) Run(ctx context.Context) error {
	if l.rdb == nil {
		<-ctx.Done()
		return nil
	}
	start := l.cfg.Now()
	pctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout*4)
	if err := l.rdb.Ping(pctx).Err(); err != nil && ctx.Err() == nil {
		l.markDown(err, start)
	}
	cancel()
	t := time.NewTicker(l.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if l.up.Load() {
			continue
		}
		start := l.cfg.Now()
		pctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout*4)
		err := l.rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			l.markUp(start)
		} else {
			l.errs.Add(1)
		}
	}
}

// Stats returns the counters.
func (l *Limiter) Stats() Stats {
	st := Stats{RedisConfigured: l.rdb != nil, RedisUp: l.rdb != nil && l.up.Load(), RedisErrors: l.errs.Load(),
		LocalDenials: l.lden.Load()}
	if l.pipe != nil {
		st.RedisCalls, st.RedisRoundTrips = l.pipe.commands.Load(), l.pipe.roundTrips.Load()
	}
	return st
}

// Close releases the Redis client.
func (l *Limiter) Close() error {
	if l.deny != nil {
		l.deny.Close()
	}
	if l.rdb != nil {
		l.pipe.close()
		return l.rdb.Close()
	}
	return nil
}
