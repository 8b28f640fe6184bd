package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/duration"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// outcome is the status and sentence a page shows for a refused or
// failed action, in the admin API's terms.
func outcome(log *slog.Logger, err error) (int, string) {
	msg := err.Error()
	switch {
	case errors.Is(err, admin.ErrInvalid):
		return http.StatusBadRequest, strings.TrimPrefix(msg, admin.ErrInvalid.Error()+": ")
	case errors.Is(err, admin.ErrForbidden):
		return http.StatusForbidden, "Not allowed: " + strings.TrimPrefix(msg, admin.ErrForbidden.Error()+": ")
	case errors.Is(err, admin.ErrAlreadyRevoked):
		return http.StatusConflict, strings.TrimPrefix(msg, admin.ErrAlreadyRevoked.Error()+": ")
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "No such key: it does not exist, or is not yours to see."
	}
	log.Error("web: action failed", slog.Any("error", err))
	return http.StatusServiceUnavailable, "The key database could not complete the request. Try again in a moment."
}

// site is what the portal and the console share: the service they act
// through, their pages, and the actions both offer.
type site struct {
	name  string // "portal", "console", in logs
	svc   *admin.Service
	log   *slog.Logger
	pages pages
}

// fail shows an error page keeping v's header and navigation.
func (p *site) fail(w http.ResponseWriter, v view, status int, msg string) {
	v.Error, v.Notice, v.Data = msg, "", nil
	if v.Title == "" {
		v.Title = http.StatusText(status)
	}
	p.pages.render(w, p.log, status, "error", v)
}

// graceChoices are the roll page's choices: how long the old key keeps
// working.
var graceChoices = []struct{ Value, Label string }{
	{"1h", "1 hour"}, {"24h", "24 hours"}, {"3d", "3 days"}, {"7d", "7 days"},
}

type listData struct {
	Keys       []keyRow
	CanCreate  bool
	More       bool
	Tenant     string // the console's filter
	FilterPath string
}

// list shows keys, newest first: the session's tenant's in the portal,
// every tenant's (or the one filtered) in the console.
func (p *site) list(w http.ResponseWriter, r *http.Request, v view) {
	tenant := strings.TrimSpace(r.URL.Query().Get("tenant"))
	rs, next, err := p.svc.List(r.Context(), admin.ListRequest{Tenant: tenant, IncludeRevoked: true, Limit: admin.MaxPageSize})
	if err != nil {
		status, msg := outcome(p.log, err)
		p.fail(w, v, status, msg)
		return
	}
	now := time.Now()
	d := listData{CanCreate: !v.Console && admin.CallerOf(r.Context()).Can(admin.PermKeysCreate), More: next != "", Tenant: tenant, FilterPath: "/"}
	slices.SortStableFunc(rs, func(a, b keys.Record) int { return b.CreatedAt.Compare(a.CreatedAt) }) // newest first
	for _, rec := range rs {
		d.Keys = append(d.Keys, rowOf(rec, now))
	}
	v.Title, v.Data = "API keys", d
	p.pages.render(w, p.log, http.StatusOK, "keys", v)
}

type formData struct {
	Name   string
	Env    string
	Envs   []string
	Scopes []string // allowed
	Chosen []string
	CIDRs  string // allowed networks, as typed
}

func (p *site) form(r *http.Request) formData {
	c := admin.CallerOf(r.Context())
	d := formData{Scopes: c.Scopes, Env: string(keys.EnvTest)}
	for _, e := range c.Envs {
		d.Envs = append(d.Envs, string(e))
	}
	if len(d.Envs) > 0 && !has(d.Envs, d.Env) {
		d.Env = d.Envs[0]
	}
	return d
}

func has(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (p *site) newKey(w http.ResponseWriter, r *http.Request, v view) {
	if c := admin.CallerOf(r.Context()); !c.Can(admin.PermKeysCreate) {
		p.fail(w, v, http.StatusForbidden, "Not allowed: your session may not create keys.")
		return
	}
	v.Title, v.Data = "Create an API key", p.form(r)
	p.pages.render(w, p.log, http.StatusOK, "new", v)
}

// createKey makes the key and shows its secret, once.
func (p *site) createKey(w http.ResponseWriter, r *http.Request, v view) {
	d := p.form(r)
	if err := r.ParseForm(); err != nil {
		p.fail(w, v, http.StatusBadRequest, "The form could not be read.")
		return
	}
	d.Name, d.Env, d.Chosen = strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("env"), r.PostForm["scopes"]
	d.CIDRs = strings.TrimSpace(r.PostForm.Get("allowed_cidrs"))
	var cidrs []string
	if d.CIDRs != "" {
		cidrs = []string{d.CIDRs}
	}
	c, err := p.svc.Create(r.Context(), admin.CreateRequest{Name: d.Name, Env: keys.Env(d.Env), Scopes: d.Chosen, AllowedCIDRs: cidrs})
	if err != nil {
		status, msg := outcome(p.log, err)
		v.Title, v.Error, v.Data = "Create an API key", msg, d
		p.pages.render(w, p.log, status, "new", v)
		return
	}
	p.log.Info(p.name+": key created", slog.Any("key", c.Record))
	v.Title, v.Data = "Your new API key", secretData{Key: admin.ViewCreated(c, time.Now()), Display: rowOf(c.Record, time.Now()).Display}
	p.pages.render(w, p.log, http.StatusCreated, "secret", v)
}

type secretData struct {
	Key     admin.KeyView
	Display string
	Old     *keyRow // a roll's old key, working until its expiry
}

type keyData struct {
	Key       keyRow
	CanRevoke bool
	CanRoll   bool
	Graces    any
	Usage     *usageCharts
}

func (p *site) loadKey(w http.ResponseWriter, r *http.Request, v view) (keyData, bool) {
	rec, err := p.svc.Show(r.Context(), r.PathValue("id"))
	if err != nil {
		status, msg := outcome(p.log, err)
		p.fail(w, v, status, msg)
		return keyData{}, false
	}
	c := admin.CallerOf(r.Context())
	row := rowOf(rec, time.Now())
	return keyData{Key: row, CanRevoke: c.Can(admin.PermKeysRevoke) && row.Status != "revoked",
		CanRoll: c.Can(admin.PermKeysRoll) && row.Status == "active", Graces: graceChoices}, true
}

func (p *site) showKey(w http.ResponseWriter, r *http.Request, v view) {
	d, ok := p.loadKey(w, r, v)
	if !ok {
		return
	}
	d.Usage = p.usage(r, d.Key.ID, "")
	v.Title, v.Data = "Key "+d.Key.Display, d
	p.pages.render(w, p.log, http.StatusOK, "key", v)
}

func (p *site) confirmRevoke(w http.ResponseWriter, r *http.Request, v view) {
	d, ok := p.loadKey(w, r, v)
	if !ok {
		return
	}
	v.Title, v.Data = "Revoke key "+d.Key.Display+"?", d
	p.pages.render(w, p.log, http.StatusOK, "revoke", v)
}

func (p *site) revokeKey(w http.ResponseWriter, r *http.Request, v view) {
	rec, err := p.svc.Revoke(r.Context(), r.PathValue("id"))
	if err != nil {
		status, msg := outcome(p.log, err)
		p.fail(w, v, status, msg)
		return
	}
	p.log.Info(p.name+": key revoked", slog.Any("key", rec))
	http.Redirect(w, r, v.Base+"/keys/"+rec.ID, http.StatusSeeOther)
}

func (p *site) confirmRoll(w http.ResponseWriter, r *http.Request, v view) {
	d, ok := p.loadKey(w, r, v)
	if !ok {
		return
	}
	v.Title, v.Data = "Roll key "+d.Key.Display, d
	p.pages.render(w, p.log, http.StatusOK, "roll", v)
}

func (p *site) rollKey(w http.ResponseWriter, r *http.Request, v view) {
	grace, err := parseGrace(r)
	if err == nil {
		var old keys.Record
		var c admin.Created
		if old, c, err = p.svc.Roll(r.Context(), r.PathValue("id"), grace); err == nil {
			p.log.Info(p.name+": key rolled", slog.Any("old", old), slog.Any("new", c.Record))
			now := time.Now()
			o := rowOf(old, now)
			v.Title, v.Data = "Your new API key", secretData{Key: admin.ViewCreated(c, now), Display: rowOf(c.Record, now).Display, Old: &o}
			p.pages.render(w, p.log, http.StatusCreated, "secret", v)
			return
		}
	}
	status, msg := outcome(p.log, err)
	p.fail(w, v, status, msg)
}

// parseGrace reads the roll form's grace: one of graceChoices.
func parseGrace(r *http.Request) (time.Duration, error) {
	g := r.PostFormValue("grace")
	for _, c := range graceChoices {
		if c.Value == g {
			return duration.Parse(g)
		}
	}
	return 0, fmt.Errorf("%w: grace: choose how long the old key keeps working", admin.ErrInvalid)
}

type auditData struct {
	Events     []admin.EventView
	More       bool
	Tenant     string
	FilterPath string
}

func (p *site) audit(w http.ResponseWriter, r *http.Request, v view) {
	tenant := strings.TrimSpace(r.URL.Query().Get("tenant"))
	evs, next, err := p.svc.Audit(r.Context(), admin.AuditRequest{Tenant: tenant, Limit: 200})
	if err != nil {
		status, msg := outcome(p.log, err)
		p.fail(w, v, status, msg)
		return
	}
	v.Title, v.Data = "Activity", auditData{Events: admin.ViewEvents(evs), More: next != "", Tenant: tenant, FilterPath: "/audit"}
	if v.Console {
		v.Title = "Audit log"
	}
	p.pages.render(w, p.log, http.StatusOK, "audit", v)
}

// usageCharts are a key's or a tenant's decisions over the last 24 hours
// (hourly) and 30 days (daily).
type usageCharts struct {
	Day, Month chartView
}

// usage charts key id's (or, with id empty, tenant's) usage; nil when the
// caller may not read usage or it could not be read (the page still shows).
func (p *site) usage(r *http.Request, id, tenant string) *usageCharts {
	ctx := r.Context()
	if !admin.CallerOf(ctx).Can(admin.PermUsageRead) {
		return nil
	}
	now := time.Now()
	read := func(q admin.UsageQuery) (admin.UsageView, error) {
		if id != "" {
			return p.svc.KeyUsage(ctx, id, q)
		}
		return p.svc.TenantUsage(ctx, tenant, q)
	}
	day, err := read(admin.UsageQuery{Since: now.Add(-23 * time.Hour), Until: now, Granularity: "hour"})
	if err != nil {
		p.log.Error(p.name+": reading usage", slog.Any("error", err))
		return nil
	}
	month, err := read(admin.UsageQuery{Since: now.Add(-29 * 24 * time.Hour), Until: now, Granularity: "day"})
	if err != nil {
		p.log.Error(p.name+": reading usage", slog.Any("error", err))
		return nil
	}
	return &usageCharts{
		Day:   newChart("usage-day", "Last 24 hours", points(day), true),
		Month: newChart("usage-month", "Last 30 days", points(month), false),
	}
}

func points(v admin.UsageView) []usagePoint {
	out := make([]usagePoint, len(v.Buckets))
	for i, b := range v.Buckets {
		out[i] = usagePoint{Start: b.Start, Allowed: b.Allowed, RateLimited: b.RateLimited, Denied: b.Denied}
	}
	return out
}
