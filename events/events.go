// Package events tells the outside world what happens to keys: it
// delivers the events outbox of the key database — every audit event, and
// the notices it adds itself (a key about to expire or expired, a key's
// first 429 in a window) — as signed webhooks (Standard Webhooks), at
// least once, retrying with backoff until webhooks.max_age.
//
// Delivery is shared by every replica through the key database: an event
// is dispatched once into one delivery per endpoint that wants it, and a
// delivery is claimed under a lease, so that two replicas never send it
// at once and a replica that dies mid-send leaves it to the next. Sends
// run on their own goroutines with a timeout, a bounded number at a
// time: a slow or dead endpoint never slows a Check or an admin request.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// outbox is the part of the key database events uses. store.DB
// implements it.
type outbox interface {
	AddEvents(ctx context.Context, evs []store.Event) (int, error)
	DispatchEvents(ctx context.Context, limit int, now time.Time, endpoints func(store.Event) []string) (int, error)
	ClaimDeliveries(ctx context.Context, now, until time.Time, limit int) ([]store.Delivery, error)
	FinishDelivery(ctx context.Context, r store.DeliveryResult) (bool, error)
	OldestUndelivered(ctx context.Context) (time.Time, error)
	ExpiringKeys(ctx context.Context, after, until time.Time, afterID string, limit int) ([]keys.Record, error)
}

var _ outbox = (store.DB)(nil)

// Config is how events are delivered. Zero durations and counts take the
// defaults below.
type Config struct {
	Endpoints []Endpoint
	// MaxAge is how long an event is retried before its delivery is
	// marked failed. Default 24h.
	MaxAge time.Duration
	// Timeout bounds one attempt, from connecting to reading the answer.
	// Default 15s (Standard Webhooks suggests 15 to 30 s).
	Timeout time.Duration
	// Concurrency bounds the attempts in flight at once. Default 8.
	Concurrency int
	// MinBackoff is the wait after a first failed attempt, doubled after
	// each further one (with jitter) up to MaxBackoff. Defaults 5s, 1h.
	MinBackoff, MaxBackoff time.Duration
	// PollInterval paces looking for due deliveries when nothing wakes
	// the publisher (Notify). Default 1s; without endpoints, 30 s (there
	// is only bookkeeping to do).
	PollInterval time.Duration
	// ExpiringBefore are the times before a key's expiry at which
	// key.expiring is sent. Default 7d and 1d.
	ExpiringBefore []time.Duration
	// ScanInterval paces the scan for expiring keys. Default 1m.
	ScanInterval time.Duration
	// QueryTimeout bounds writing a result after its attempt, even at
	// shutdown. Default 5s.
	QueryTimeout time.Duration
	// Client sends the webhooks; nil: one with Timeout that follows no
	// redirects (a 3xx is a failed attempt).
	Client *http.Client
	Now    func() time.Time // nil: time.Now
}

// Defaults of Config.
const (
	DefaultMaxAge       = 24 * time.Hour
	DefaultTimeout      = 15 * time.Second
	DefaultConcurrency  = 8
	DefaultMinBackoff   = 5 * time.Second
	DefaultMaxBackoff   = time.Hour
	DefaultPollInterval = time.Second
	idlePollInterval    = 30 * time.Second
	DefaultScanInterval = time.Minute
	maxConcurrency      = 256
	// dispatchBatch is how many events one pass dispatches at most.
	dispatchBatch = 100
	// leaseMargin is how much longer than an attempt a claim lasts: the
	// time to store the attempt's result.
	leaseMargin = 30 * time.Second
)

// DefaultExpiringBefore are the default times of key.expiring notices.
func DefaultExpiringBefore() []time.Duration {
	return []time.Duration{7 * 24 * time.Hour, 24 * time.Hour}
}

// Validate checks c's own rules (endpoints are checked by Endpoints);
// errors name the field under the config's names.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	for field, d := range map[string]time.Duration{"webhooks.max_age": c.MaxAge, "webhooks.timeout": c.Timeout,
		"webhooks.min_backoff": c.MinBackoff, "webhooks.max_backoff": c.MaxBackoff} {
		if d < 0 {
			bad(field, "must not be negative, got %v", d)
		}
	}
	if c.Timeout > 5*time.Minute {
		bad("webhooks.timeout", "at most 5m, got %v", c.Timeout)
	}
	if c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		bad("webhooks.min_backoff", "%v is more than webhooks.max_backoff (%v)", c.MinBackoff, c.MaxBackoff)
	}
	if c.Concurrency < 0 || c.Concurrency > maxConcurrency {
		bad("webhooks.concurrency", "must be from 1 to %d, got %d", maxConcurrency, c.Concurrency)
	}
	for i, d := range c.ExpiringBefore {
		switch {
		case d <= 0 || d > 366*24*time.Hour:
			bad(fmt.Sprintf("events.expiring_before[%d]", i), "must be from 1s to 366d, got %v", d)
		case slices.Index(c.ExpiringBefore, d) < i:
			bad(fmt.Sprintf("events.expiring_before[%d]", i), "%v is listed twice", d)
		}
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.MaxAge, DefaultMaxAge)
	def(&c.Timeout, DefaultTimeout)
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.ScanInterval, DefaultScanInterval)
	def(&c.QueryTimeout, 5*time.Second)
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.ExpiringBefore == nil {
		c.ExpiringBefore = DefaultExpiringBefore()
	}
	c.ExpiringBefore = slices.Clone(c.ExpiringBefore)
	slices.Sort(c.ExpiringBefore)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Timeout:       c.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{
				Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: c.Concurrency,
				IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ForceAttemptHTTP2: true,
			},
		}
	}
	return c
}

// Publisher delivers the outbox's events to the webhook endpoints and
// adds Keygate's own notices to it. New builds it; Run runs it.
type Publisher struct {
	cfg       Config
	db        outbox
	log       *slog.Logger
	endpoints map[string]*Endpoint // by URL
	wake      chan struct{}
	freed     chan struct{}
	notices   *rateNotices // nil: no endpoint wants key.rate_limited
	expiring  bool         // some endpoint wants key.expiring or key.expired

	delivered, attemptsFailed, failed atomic.Uint64
	oldest                            atomic.Int64 // Unix microseconds; 0: nothing undelivered
	// passes and scans count the delivery loop's passes and the expiry
	// scans done, so that a test can wait for more of them.
	passes, scans atomic.Uint64
}

// New builds a Publisher over db. It starts nothing.
func New(cfg Config, db outbox, log *slog.Logger) (*Publisher, error) {
	if db == nil || log == nil {
		return nil, errors.New("events: a database and a logger are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Publisher{cfg: cfg, db: db, log: log, endpoints: map[string]*Endpoint{},
		wake: make(chan struct{}, 1), freed: make(chan struct{}, 1)}
	for i := range cfg.Endpoints {
		ep := &cfg.Endpoints[i]
		if err := checkURL(ep.URL); err != nil {
			return nil, fmt.Errorf("events: endpoint %d: %w", i, err)
		}
		if len(ep.Secret.key) == 0 {
			return nil, fmt.Errorf("events: endpoint %s has no secret", site(ep.URL))
		}
		p.endpoints[ep.URL] = ep
	}
	if p.wanted(store.EventKeyRateLimited) {
		p.notices = newRateNotices()
	}
	p.expiring = p.wanted(store.EventKeyExpiring) || p.wanted(store.EventKeyExpired)
	return p, nil
}

// wanted reports whether some endpoint wants events of type typ.
func (p *Publisher) wanted(typ string) bool {
	for _, ep := range p.endpoints {
		if len(ep.Events) == 0 || slices.Contains(ep.Events, typ) {
			return true
		}
	}
	return false
}

// route lists the endpoints that want e, in the config's order.
func (p *Publisher) route(e store.Event) []string {
	var out []string
	for i := range p.cfg.Endpoints {
		if ep := &p.cfg.Endpoints[i]; ep.wants(e.Type, e.Tenant) {
			out = append(out, ep.URL)
		}
	}
	return out
}

// Notify wakes the publisher to look for new events now, rather than at
// its next poll: the server calls it after its own writes and on the
// database's change notices. It never blocks.
func (p *Publisher) Notify() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, scanning for expiring keys and writing
// rate-limit notices beside. On the way out it stops claiming, cancels
// the attempts in flight (each is left pending, due at once, for the next
// replica or start) and writes the notices it holds.
func (p *Publisher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if p.notices != nil {
		wg.Go(func() { p.writeNotices(ctx) })
	}
	if p.expiring {
		wg.Go(func() { p.scanExpiring(ctx) })
	}
	p.deliver(ctx)
	wg.Wait()
	return nil
}

// Stats are the publisher's counters, read by the metrics endpoint.
type Stats struct {
	Delivered      uint64 // deliveries an endpoint took (2xx)
	AttemptsFailed uint64 // attempts that failed (and were retried, or not)
	Failed         uint64 // deliveries given up (past max_age, or 410 Gone)
	NoticesDropped uint64 // rate-limit notices not queued for want of room
	// OldestUndelivered is the time of the oldest event not yet
	// delivered or given up, as last read; zero when there is none.
	OldestUndelivered time.Time
}

// Stats reads the counters.
func (p *Publisher) Stats() Stats {
	st := Stats{Delivered: p.delivered.Load(), AttemptsFailed: p.attemptsFailed.Load(), Failed: p.failed.Load()}
	if p.notices != nil {
		st.NoticesDropped = p.notices.dropped.Load()
	}
	if us := p.oldest.Load(); us != 0 {
		st.OldestUndelivered = time.UnixMicro(us)
	}
	return st
}

// keygate is the actor of the events Keygate notices itself.
var keygate = store.Actor{Type: store.ActorSystem, Name: "keygate"}

// wait waits for d or ctx, whichever ends first, and reports whether ctx
// is still going.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
