// Package extauthz answers Envoy's ext_authz Check: it maps a CheckRequest
// to a Request, decides by key, route, organization, scope and rate limit,
// and renders the Decision as a CheckResponse. A denial is a response; a
// gRPC error means a real internal failure.
package extauthz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/usage"
)

// keyLookup resolves a hashed key. *cache.Cache implements it.
type keyLookup interface {
	// Peek answers from memory only: found, the hash is cached; known, as
	// an existing key rather than a remembered miss.
	Peek(h keys.Hash) (rec keys.Record, found, known bool)
	Lookup(ctx context.Context, h keys.Hash) (keys.Record, error)
	Grant(tenant, org string) (keys.Grant, bool)
}

// failureLimiter limits failed authentications per client address.
// *limits.Failures implements it.
type failureLimiter interface {
	Blocked(addr string) (time.Duration, bool)
	Fail(addr string) (time.Duration, bool)
}

var _ failureLimiter = (*limits.Failures)(nil)

var _ keyLookup = (*cache.Cache)(nil)

// limiter spends one request of a key's plan. *limits.Limiter implements it.
type limiter interface {
	AllowFor(ctx context.Context, bucket, tenant, plan string) (limits.Result, error)
	PolicyFor(plan, tenant string) string
}

var _ limiter = (*limits.Limiter)(nil)

// rateLimitNotifier is told of every 429 a key's plan gives, with the
// window that refused it; it must not block. *events.Publisher
// implements it.
type rateLimitNotifier interface {
	RateLimited(rec keys.Record, w limits.Window, at time.Time)
}

var _ rateLimitNotifier = (*events.Publisher)(nil)

// usageRecorder counts each decision about a known key; it must not
// block or allocate per call. Writes are batched elsewhere.
// *usage.Recorder implements it.
type usageRecorder interface {
	Record(id, tenant string, o usage.Outcome, at time.Time)
}

var _ usageRecorder = (*usage.Recorder)(nil)

// HeaderNames are the headers Keygate reads and injects.
type HeaderNames struct {
	Auth, Org                                string // read
	KeyID, Tenant, OrgOut, Env, Scopes, Plan string // injected
	// Metadata maps metadata keys to the headers injected with their
	// values, for keys that have them.
	Metadata map[string]string
}

// Config is what the server needs besides its collaborators.
type Config struct {
	Formats *keys.Formats
	Hasher  *keys.Hasher
	Policy  *policy.Policy
	Headers HeaderNames
	Realm   string
	// UnavailableRetry is the Retry-After sent with 503s.
	UnavailableRetry time.Duration
	// Errors shapes denial bodies; the zero value is the documented format.
	Errors *ErrorFormat
	// Failures, if set, limits failed authentications per client address:
	// once an address is over, keys not already in memory get 429 before
	// any database lookup (keys in memory still work, so one client's
	// guessing does not lock out others behind the same address).
	Failures failureLimiter
	// RateLimited, if set, is told of each request a key's rate limit
	// refuses (the allowed path never calls it).
	RateLimited rateLimitNotifier
	// TrustedHops is how many proxies in front of Envoy append to
	// X-Forwarded-For; 0 means the client is Envoy's source address.
	TrustedHops int
	// Tracer, if set, starts a span per decision that joins the caller's
	// trace (trace.go); nil: no tracing work at all.
	Tracer trace.Tracer
	Now    func() time.Time // nil: time.Now
}

// Server decides Checks. It is safe for concurrent use.
type Server struct {
	cfg     Config
	keys    keyLookup
	lim     limiter
	usage   usageRecorder
	log     *slog.Logger
	names   headerNames
	metrics *Metrics
	ids     idGen
	www     wwwAuth
	bodies  *bodies
	// codeValues are the metadata values of each code, built once and
	// shared (read-only) by every response.
	codeValues [numCodes]*structpb.Value
	parts      partsCache
	// meta are the metadata headers, by metadata key, sorted.
	meta []metaHeader
	// injectedClock: Config.Now was set (tests); otherwise decisions take
	// the time the transport already read, one clock read fewer.
	injectedClock bool
}

// New builds a Server. metrics may be nil.
func New(cfg Config, kl keyLookup, lim limiter, usage usageRecorder, m *Metrics, log *slog.Logger) (*Server, error) {
	switch {
	case cfg.Formats == nil || cfg.Hasher == nil || cfg.Policy == nil:
		return nil, errors.New("extauthz: Formats, Hasher and Policy are required")
	case kl == nil || lim == nil || usage == nil || log == nil:
		return nil, errors.New("extauthz: key lookup, limiter, usage recorder and logger are required")
	case cfg.Headers.Auth == "" || cfg.Headers.Org == "":
		return nil, errors.New("extauthz: Headers.Auth and Headers.Org are required")
	case cfg.Realm == "":
		return nil, errors.New("extauthz: Realm is required")
	}
	injectedClock := cfg.Now != nil
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UnavailableRetry < time.Second {
		cfg.UnavailableRetry = time.Second
	}
	if cfg.Errors == nil {
		f := DefaultErrorFormat()
		cfg.Errors = &f
	}
	bs, err := compileBodies(*cfg.Errors)
	if err != nil {
		return nil, err
	}
	var prefix [6]byte
	if _, err := rand.Read(prefix[:]); err != nil {
		return nil, fmt.Errorf("extauthz: seeding request ids: %w", err)
	}
	s := &Server{
		cfg: cfg, keys: kl, lim: lim, usage: usage, log: log, metrics: m,
		ids: idGen{prefix: hex.EncodeToString(prefix[:]) + "-"},
		www: newWWWAuth(cfg.Realm), bodies: bs, injectedClock: injectedClock,
	}
	for c := range s.codeValues {
		s.codeValues[c] = structpb.NewStringValue(Code(c).String())
	}
	s.names = headerNames{auth: cfg.Headers.Auth, org: cfg.Headers.Org, injected: map[string]bool{}, exts: &extCache{},
		trace: cfg.Tracer != nil}
	for _, h := range []string{cfg.Headers.KeyID, cfg.Headers.Tenant, cfg.Headers.OrgOut, cfg.Headers.Env, cfg.Headers.Scopes, cfg.Headers.Plan} {
		s.names.injected[h] = true
	}
	s.meta, s.names.metaOther = metadataHeaders(cfg.Headers.Metadata)
	return s, nil
}

// Decision is the outcome of one request, ready to render.
type Decision struct {
	Code      Code
	Detail    string // appended to the code's message (the missing scope)
	RequestID string
	Route     string
	// Key is the key's record once it is known (valid or not active):
	// HasKey says so. Held by value, as is Rate, so that a Decision costs
	// no allocation of its own.
	Key    keys.Record
	HasKey bool
	Org    string
	Scopes []string // effective scopes
	Plan   string
	// Rate is the limiter's answer, once it answered: HasRate says so.
	Rate       limits.Result
	HasRate    bool
	RetryAfter time.Duration
	TokenSent  bool
	Strip      []string
	Now        time.Time
}

// Allowed reports whether the request may go on.
func (d *Decision) Allowed() bool { return d.Code == CodeOK }

// Decide runs the whole decision for one request.
func (s *Server) Decide(ctx context.Context, r *Request) Decision {
	return s.decideAt(ctx, r, time.Now())
}

// decideAt decides at now, the time the request arrived, unless a clock
// was injected.
func (s *Server) decideAt(ctx context.Context, r *Request, now time.Time) Decision {
	if s.injectedClock {
		now = s.cfg.Now()
	}
	d := Decision{RequestID: validRequestID(r.RequestID), Strip: r.Strip, Now: now}
	if d.RequestID == "" {
		d.RequestID = s.ids.next()
	}
	d.Code = s.decide(ctx, r, &d)
	if d.HasKey {
		s.count(&d)
	}
	return d
}

// count tells the usage recorder what a decision about a known key came
// to. A 503 is Keygate's failure to decide, not a decision: not counted.
func (s *Server) count(d *Decision) {
	o := usage.Denied
	switch d.Code {
	case CodeOK, CodeIntrospection:
		o = usage.Allowed
	case CodeRateLimited:
		o = usage.RateLimited
	case CodeUnavailable:
		return
	}
	s.usage.Record(d.Key.ID, d.Key.Tenant, o, d.Now)
}

func (s *Server) decide(ctx context.Context, r *Request, d *Decision) Code {
	switch {
	case r.AuthCount == 0:
		return CodeMissingAPIKey
	case r.AuthCount > 1:
		return CodeMalformedAuthorization
	}
	token, ok := bearer(r.Authorization)
	if !ok {
		return CodeMalformedAuthorization
	}
	d.TokenSent = true
	h := s.cfg.Hasher.Sum(token)
	rec, found, known := s.keys.Peek(h)
	if !known && s.cfg.Failures != nil {
		if addr := s.client(r); addr != "" {
			if retry, blocked := s.cfg.Failures.Blocked(addr); blocked {
				d.RetryAfter, d.Detail = retry, tooManyFailures
				return CodeRateLimited
			}
		}
	}
	if _, err := s.cfg.Formats.Parse(token); err != nil || found && !known {
		return CodeInvalidAPIKey // rejected without a query: nothing to limit
	}
	if !found {
		var err error
		rec, err = s.keys.Lookup(ctx, h)
		switch {
		case errors.Is(err, cache.ErrNotFound):
			return s.failed(r, d)
		case errors.Is(err, cache.ErrOverBudget):
			// A flood's symptom, counted and logged by the cache: a line
			// per request would turn the flood into a log flood.
			d.RetryAfter = s.cfg.UnavailableRetry
			return CodeUnavailable
		case err != nil:
			s.log.LogAttrs(ctx, slog.LevelWarn, "key lookup failed", slog.String("request_id", d.RequestID), slog.Any("error", err))
			d.RetryAfter = s.cfg.UnavailableRetry
			return CodeUnavailable
		}
	}
	d.Key, d.HasKey = rec, true
	switch rec.Status(d.Now) {
	case keys.StatusRevoked:
		return CodeAPIKeyRevoked
	case keys.StatusExpired:
		return CodeAPIKeyExpired
	}
	if len(rec.AllowedCIDRs) > 0 && !s.fromAllowedNetwork(r, &rec) {
		return CodeIPNotAllowed
	}

	intro := s.cfg.Policy.Introspects(r.Method, r.Path)
	var m policy.Match
	var err2 error
	if intro {
		m = policy.Match{Found: true, Route: "introspection", OrgRequired: s.cfg.Policy.OrgRequired()}
	} else {
		m, err2 = s.cfg.Policy.Match(r.Method, r.Path, r.Extensions)
	}
	if err := err2; err != nil {
		// Context extensions come from the proxy's config, not the client:
		// a bad one is an operator's mistake, reported as unavailable.
		s.log.LogAttrs(ctx, slog.LevelError, "bad context_extensions from proxy", slog.String("request_id", d.RequestID), slog.Any("error", err))
		d.RetryAfter = s.cfg.UnavailableRetry
		return CodeUnavailable
	}
	if !m.Found {
		return CodeRouteNotFound
	}
	d.Route = m.Route

	switch {
	case r.OrgCount > 1:
		return CodeInvalidOrganization
	case r.OrgCount == 0:
		if m.OrgRequired {
			return CodeMissingOrganization
		}
		d.Org = rec.Tenant
	case !policy.ValidOrg(r.Org):
		return CodeInvalidOrganization
	default:
		d.Org = r.Org
	}
	d.Scopes = rec.Scopes
	if d.Org != rec.Tenant {
		g, ok := s.keys.Grant(rec.Tenant, d.Org)
		if !ok {
			return CodeOrganizationForbidden
		}
		d.Scopes = s.cfg.Policy.Effective(rec.Scopes, g.Scopes)
	}
	if missing, ok := s.cfg.Policy.Missing(d.Scopes, m.Scopes); ok && !intro {
		d.Detail = missing
		return CodeInsufficientScope
	}

	d.Plan = rec.Plan
	if d.Plan == "" {
		d.Plan = string(rec.Env)
	}
	bucket := rec.Lineage
	if bucket == "" {
		bucket = rec.ID
	}
	var err error
	d.Rate, err = s.lim.AllowFor(ctx, bucket, rec.Tenant, d.Plan)
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, limits.ErrUnknownPlan) {
			level = slog.LevelError
		}
		s.log.LogAttrs(ctx, level, "rate limiter failed", slog.String("request_id", d.RequestID), slog.String("plan", d.Plan), slog.Any("error", err))
		d.RetryAfter = s.cfg.UnavailableRetry
		return CodeUnavailable
	}
	d.HasRate = true
	if !d.Rate.Allowed {
		d.RetryAfter = d.Rate.RetryAfter
		if s.cfg.RateLimited != nil {
			s.cfg.RateLimited.RateLimited(rec, d.Rate.Window, d.Now)
		}
		return CodeRateLimited
	}
	if intro {
		return CodeIntrospection
	}
	if len(rec.Metadata) > 0 && len(d.Strip) > 0 {
		d.Strip = s.unstripMetadata(d.Strip, &rec)
	}
	return CodeOK
}

const tooManyFailures = ": too many failed authentications from this address"

// failed counts a failed authentication — a well-formed key nobody has,
// found so by a database query or, over the look-up budget, by a cache
// that holds every key — against the client's address. Malformed keys and
// remembered misses (one guess repeated) are not counted, nor are requests
// whose client address is unknown.
func (s *Server) failed(r *Request, d *Decision) Code {
	if s.cfg.Failures != nil {
		if addr := s.client(r); addr != "" {
			s.cfg.Failures.Fail(addr)
		}
	}
	return CodeInvalidAPIKey
}

// client is the address failures are counted against: with trusted hops,
// the X-Forwarded-For entry that many from the right (the one the
// outermost trusted proxy saw), else the peer Envoy saw.
func (s *Server) client(r *Request) string {
	if n := s.cfg.TrustedHops; n > 0 && r.ForwardedFor != "" {
		xff := r.ForwardedFor
		for i := 1; i < n; i++ {
			j := strings.LastIndexByte(xff, ',')
			if j < 0 {
				return r.Source
			}
			xff = xff[:j]
		}
		if j := strings.LastIndexByte(xff, ','); j >= 0 {
			xff = xff[j+1:]
		}
		if a := strings.TrimSpace(xff); a != "" {
			return a
		}
	}
	return r.Source
}

// idGen makes request ids when the proxy sent none: a per-process random
// prefix and a counter, unique without a syscall per request.
type idGen struct {
	prefix string
	n      atomic.Uint64
}

func (g *idGen) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}

// validRequestID keeps a client-supplied id only if it is short, printable
// ASCII: it is echoed in bodies and logs.
func validRequestID(id string) string {
	if len(id) == 0 || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e || id[i] == '"' || id[i] == '\\' {
			return ""
		}
	}
	return id
}
