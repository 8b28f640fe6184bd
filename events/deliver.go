package events

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/store"
)

// oldestEvery paces reading the age of the oldest undelivered event.
const oldestEvery = 5 * time.Second

// deliver runs the delivery loop until ctx ends: dispatch new events into
// deliveries, claim the due ones as attempts can start, and send each on
// a goroutine of its own.
func (p *Publisher) deliver(ctx context.Context) {
	slots := make(chan struct{}, p.cfg.Concurrency)
	var inflight sync.WaitGroup
	// Attempts outlive ctx only to be cancelled and recorded as such.
	sends, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		cancelSends()
		inflight.Wait()
	}()
	interval := p.cfg.PollInterval
	if len(p.endpoints) == 0 {
		interval = max(interval, idlePollInterval)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastOldest time.Time
	for {
		more := p.pass(ctx, sends, slots, &inflight)
		p.passes.Add(1)
		if now := p.cfg.Now(); len(p.endpoints) > 0 && now.Sub(lastOldest) >= oldestEvery {
			p.readOldest(ctx)
			lastOldest = now
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-p.freed:
		case <-tick.C:
		}
	}
}

// pass dispatches a batch of new events and starts attempts for as many
// due deliveries as there are free slots. It reports whether there is
// more to do at once.
func (p *Publisher) pass(ctx context.Context, sends context.Context, slots chan struct{}, inflight *sync.WaitGroup) bool {
	if ctx.Err() != nil {
		return false
	}
	now := p.cfg.Now()
	n, err := p.db.DispatchEvents(ctx, dispatchBatch, now, p.route)
	if err != nil {
		p.dbFailed(ctx, "dispatching events", err)
		return false
	}
	free := cap(slots) - len(slots)
	if free == 0 || len(p.endpoints) == 0 {
		return n == dispatchBatch
	}
	ds, err := p.db.ClaimDeliveries(ctx, now, now.Add(p.cfg.Timeout+leaseMargin), free)
	if err != nil {
		p.dbFailed(ctx, "claiming deliveries", err)
		return false
	}
	for _, d := range ds {
		slots <- struct{}{}
		inflight.Go(func() {
			defer func() {
				<-slots
				select {
				case p.freed <- struct{}{}:
				default:
				}
			}()
			p.attempt(sends, d)
		})
	}
	return n == dispatchBatch || len(ds) == free
}

func (p *Publisher) dbFailed(ctx context.Context, what string, err error) {
	if ctx.Err() == nil {
		p.log.Warn("webhooks: "+what+" failed; will retry", slog.Any("error", err))
	}
}

func (p *Publisher) readOldest(ctx context.Context) {
	t, err := p.db.OldestUndelivered(ctx)
	switch {
	case err != nil:
		p.dbFailed(ctx, "reading the oldest undelivered event", err)
	case t.IsZero():
		p.oldest.Store(0)
	default:
		p.oldest.Store(t.UnixMicro())
	}
}

// attempt sends d once and stores the outcome under d's lease.
func (p *Publisher) attempt(ctx context.Context, d store.Delivery) {
	now := p.cfg.Now()
	res := store.DeliveryResult{EventID: d.Event.ID, Endpoint: d.Endpoint, Lease: d.NextAt, At: now}
	ep, ok := p.endpoints[d.Endpoint]
	var out outcome
	if ok {
		out = p.send(ctx, ep, d.Event, now)
	} else {
		// Configured on another replica only (a rolling change of the
		// config): left to it, or to max_age.
		out = outcome{err: errors.New("endpoint not configured on this replica")}
	}
	switch {
	case out.ok():
		res.Status, res.Code = store.DeliveryDelivered, out.code
	case ctx.Err() != nil:
		// Shutting down mid-attempt: the endpoint may or may not have it.
		// Due at once, under the same webhook-id, for whoever runs next.
		res.Status, res.NextAt, res.Error = store.DeliveryPending, now, "interrupted: keygate was shutting down"
	default:
		res.Code, res.Error = out.code, out.reason()
		deadline := d.Event.At.Add(p.cfg.MaxAge)
		next := now.Add(max(p.backoff(d.Attempts+1), min(out.retryAfter, p.cfg.MaxBackoff)))
		switch {
		case out.code == http.StatusGone:
			res.Status = store.DeliveryFailed
			res.Error += " (410 Gone: the endpoint asks for no more)"
		case !now.Before(deadline):
			res.Status = store.DeliveryFailed
		case next.After(deadline):
			res.Status, res.NextAt = store.DeliveryPending, deadline
		default:
			res.Status, res.NextAt = store.DeliveryPending, next
		}
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.QueryTimeout)
	defer cancel()
	stored, err := p.db.FinishDelivery(wctx, res)
	log := p.log.With(slog.String("event_id", d.Event.ID), slog.String("type", d.Event.Type),
		slog.String("endpoint", site(d.Endpoint)), slog.Int("attempt", d.Attempts+1))
	switch {
	case err != nil:
		// The lease runs out and the delivery is claimed again: at least
		// once, perhaps twice, never lost.
		log.Warn("webhooks: storing an attempt's result failed", slog.Any("error", err))
	case !stored:
		log.Warn("webhooks: the attempt outlived its claim; its result was not stored")
	}
	switch res.Status {
	case store.DeliveryDelivered:
		p.delivered.Add(1)
		log.Debug("webhook delivered", slog.Int("status", res.Code))
	case store.DeliveryFailed:
		p.attemptsFailed.Add(1)
		p.failed.Add(1)
		log.Error("webhook delivery failed for good", slog.String("reason", res.Error), slog.Time("event_at", d.Event.At))
	default:
		if ctx.Err() == nil {
			p.attemptsFailed.Add(1)
			log.Warn("webhook attempt failed; will retry", slog.String("reason", res.Error), slog.Time("next_at", res.NextAt))
		}
	}
}

// backoff is the wait after the n-th failed attempt: MinBackoff doubled
// per further attempt, capped at MaxBackoff, within ±20% so that many
// deliveries failed together do not retry together.
func (p *Publisher) backoff(n int) time.Duration {
	d := p.cfg.MinBackoff
	for i := 1; i < n && d < p.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.cfg.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// outcome is what one attempt got back.
type outcome struct {
	code       int           // HTTP status; 0: no answer
	err        error         // no answer: why
	body       string        // the start of a refusal's body
	retryAfter time.Duration // the answer's Retry-After
}

func (o outcome) ok() bool { return o.err == nil && o.code >= 200 && o.code < 300 }

func (o outcome) reason() string {
	if o.err != nil {
		return o.err.Error()
	}
	s := "HTTP " + strconv.Itoa(o.code)
	if o.body != "" {
		s += ": " + o.body
	}
	return s
}

// send posts e to ep, signed, and reads the answer.
func (p *Publisher) send(ctx context.Context, ep *Endpoint, e store.Event, now time.Time) outcome {
	body, err := Payload(e)
	if err != nil {
		return outcome{err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return outcome{err: err}
	}
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Keygate-Webhooks/1")
	req.Header.Set(HeaderID, e.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, ep.Secret.Sign(e.ID, ts, body))
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		// Not the url.Error's own text, which repeats the whole URL.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return outcome{err: err}
	}
	defer resp.Body.Close()
	out := outcome{code: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"), now)}
	if !out.ok() {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		out.body = printable(string(b))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
	return out
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// printable keeps what a log line and a terminal can show of an answer.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f || r == '\uFFFD':
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

// SendTest sends one webhook.test event to ep at once, outside the
// outbox, and says what the endpoint answered: for checking an endpoint
// and its secret (keygate webhooks test).
func SendTest(ctx context.Context, ep Endpoint, actor store.Actor, client *http.Client, timeout time.Duration) (status int, err error) {
	if err := checkURL(ep.URL); err != nil {
		return 0, err
	}
	if len(ep.Secret.key) == 0 {
		return 0, errors.New("the endpoint has no secret")
	}
	cfg := Config{Timeout: timeout, Client: client, Concurrency: 1}.withDefaults()
	p := &Publisher{cfg: cfg}
	now := cfg.Now()
	id, err := testEventID(now)
	if err != nil {
		return 0, err
	}
	out := p.send(ctx, &ep, store.Event{ID: id, At: now, Type: TypeTest, Actor: actor,
		Details: map[string]any{"message": "A test event from keygate webhooks test: the signature verifies with this endpoint's secret."}}, now)
	if out.err != nil {
		return 0, out.err
	}
	if !out.ok() {
		return out.code, fmt.Errorf("the endpoint answered %s", out.reason())
	}
	return out.code, nil
}

// testEventID is the webhook-id of a test event: shaped as an event's,
// time-ordered, random.
func testEventID(at time.Time) (string, error) {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading crypto/rand: %w", err)
	}
	return fmt.Sprintf("evt_%013x%s", at.UnixMicro(), hex.EncodeToString(b[:])), nil
}
