package web

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/store"
)

// ConsoleCookie holds an operator's console session token.
const ConsoleCookie = "keygate_console"

// SSOLink is the console sign-in page's "Sign in with …" link, for a
// single sign-on front that calls Console.LogIn once it has
// authenticated the operator.
type SSOLink struct {
	URL, Label string
}

// ConsoleConfig configures the console.
type ConsoleConfig struct {
	Service *admin.Service
	// Tokens are the admin tokens an operator may sign in with (may be
	// empty: then only the loopback link and single sign-on sign in).
	Tokens *admin.Tokens
	SSO    *SSOLink // nil: no single sign-on link
	Log    *slog.Logger
}

// Console serves /console/ on the main HTTP listener: operators sign in
// with a named admin token (or the loopback link, or single sign-on) and
// see every tenant's keys, grants, audit log and usage; a viewer sees and
// cannot change.
type Console struct {
	site
	cfg ConsoleConfig
	h   http.Handler
}

// NewConsole returns the console.
func NewConsole(cfg ConsoleConfig) (*Console, error) {
	if cfg.Service == nil || cfg.Log == nil {
		return nil, errors.New("web: console: service and logger are required")
	}
	ps, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{site: site{name: "console", svc: cfg.Service, log: cfg.Log, pages: ps}, cfg: cfg}
	mux := http.NewServeMux()
	mux.Handle("GET /console/static/", static("/console/static/", consoleBrand))
	mux.HandleFunc("POST /console/login", c.login)
	mux.HandleFunc("GET /console/link/{code}", c.link)
	mux.HandleFunc("POST /console/logout", c.logout)
	mux.HandleFunc("GET /console/{$}", c.page(c.list))
	mux.HandleFunc("GET /console/keys/{id}", c.page(c.showKey))
	mux.HandleFunc("GET /console/keys/{id}/revoke", c.page(c.confirmRevoke))
	mux.HandleFunc("POST /console/keys/{id}/revoke", c.page(c.revokeKey))
	mux.HandleFunc("GET /console/keys/{id}/roll", c.page(c.confirmRoll))
	mux.HandleFunc("POST /console/keys/{id}/roll", c.page(c.rollKey))
	mux.HandleFunc("GET /console/grants", c.page(c.grants))
	mux.HandleFunc("POST /console/grants/{tenant}/{org}/revoke", c.page(c.revokeGrant))
	mux.HandleFunc("GET /console/audit", c.page(c.audit))
	mux.HandleFunc("GET /console/portal", c.page(c.portalForm))
	mux.HandleFunc("POST /console/portal", c.page(c.openPortal))
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, c.base(), http.StatusNotFound, "There is no such page.")
	})
	c.h = securityHeaders(crossOrigin(mux, "/console/api/", ps, cfg.Log, c.base()), "'none'", "")
	return c, nil
}

// consoleBrand is the console's own look: it is Keygate's, not a tenant's.
var consoleBrand = Branding{Title: "Keygate console", AccentColor: "#334155"}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.h.ServeHTTP(w, r) }

func (c *Console) base() view { return view{Brand: consoleBrand, Base: "/console", Console: true} }

// LogIn starts a console session for p, an operator whom the caller (a
// single sign-on front) has authenticated, sets its cookie and redirects
// to /console/. p needs a role and a name.
func (c *Console) LogIn(w http.ResponseWriter, r *http.Request, p admin.Principal) error {
	token, exp, err := c.svc.StartConsoleSession(r.Context(), p)
	if err != nil {
		return err
	}
	setCookie(w, ConsoleCookie, token, "/console", int(time.Until(exp).Seconds()), r.TLS != nil)
	c.log.Info("console: signed in", slog.String("actor_type", p.Actor.Type), slog.String("name", p.Actor.Name), slog.String("role", string(p.Role)))
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
	return nil
}

// LoginLink returns a one-time sign-in link as a local admin, under
// baseURL (e.g. http://127.0.0.1:9090): what `keygate serve` prints when
// no admin token is configured. It is accepted from a loopback client only.
func (c *Console) LoginLink(ctx context.Context, baseURL string) (string, error) {
	code, err := c.svc.NewConsoleLink(ctx, LocalOperator)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(baseURL, "/") + "/console/link/" + code, nil
}

// LocalOperator is who the loopback link signs in: an admin at the
// server's own machine.
var LocalOperator = admin.Principal{Actor: store.Actor{Type: store.ActorOperator, Name: "local"}, Role: admin.RoleAdmin}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	tok, ok := c.cfg.Tokens.Authenticate(strings.TrimSpace(r.PostFormValue("token")))
	if c.cfg.Tokens.Empty() || !ok {
		v := c.base()
		v.Title, v.Error, v.Data = "Sign in", "That admin token is not one this server knows.", c.loginData()
		c.pages.render(w, c.log, http.StatusUnauthorized, "login", v)
		return
	}
	p := tok.Principal()
	p.Actor.Type = store.ActorOperator
	if err := c.LogIn(w, r, p); err != nil {
		status, msg := outcome(c.log, err)
		c.fail(w, c.base(), status, msg)
	}
}

// link signs in with the one-time loopback link.
func (c *Console) link(w http.ResponseWriter, r *http.Request) {
	if ip := net.ParseIP(admin.ClientIP(r)); ip == nil || !ip.IsLoopback() {
		c.fail(w, c.base(), http.StatusForbidden, "This sign-in link works only from the machine Keygate runs on.")
		return
	}
	p, err := c.svc.RedeemConsoleLink(r.Context(), r.PathValue("code"))
	if err != nil {
		status, msg := http.StatusNotFound, "This sign-in link has been used already or has expired. Restart keygate serve for a new one, or sign in with an admin token."
		if !errors.Is(err, store.ErrNotFound) {
			status, msg = outcome(c.log, err)
		}
		c.fail(w, c.base(), status, msg)
		return
	}
	if err := c.LogIn(w, r, p); err != nil {
		status, msg := outcome(c.log, err)
		c.fail(w, c.base(), status, msg)
	}
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(ConsoleCookie); err == nil {
		if err := c.svc.EndSession(r.Context(), store.SessionConsole, ck.Value); err != nil {
			c.log.Error("console: ending a session", slog.Any("error", err))
		}
	}
	setCookie(w, ConsoleCookie, "", "/console", -1, r.TLS != nil)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

type loginData struct {
	Tokens bool
	SSO    *SSOLink
}

func (c *Console) loginData() loginData {
	return loginData{Tokens: !c.cfg.Tokens.Empty(), SSO: c.cfg.SSO}
}

// operator reads the cookie's console session.
func (c *Console) operator(r *http.Request) (admin.Principal, bool) {
	ck, err := r.Cookie(ConsoleCookie)
	if err != nil {
		return admin.Principal{}, false
	}
	p, err := c.svc.ConsoleSessionOf(r.Context(), ck.Value)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			c.log.Error("console: reading a session", slog.Any("error", err))
		}
		return admin.Principal{}, false
	}
	return p, true
}

// page runs fn as the signed-in operator; without a session, GET
// /console/ shows the sign-in page and anything else 401.
func (c *Console) page(fn func(w http.ResponseWriter, r *http.Request, v view)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := c.operator(r)
		if !ok {
			v := c.base()
			v.Title, v.Data = "Sign in", c.loginData()
			status := http.StatusOK
			if r.URL.Path != "/console/" {
				status, v.Error = http.StatusUnauthorized, "Sign in first."
			}
			c.pages.render(w, c.log, status, "login", v)
			return
		}
		v := c.base()
		v.Who, v.Role, v.CanWrite = p.Actor.Name, string(p.Role), p.Can(admin.PermKeysRevoke)
		path := r.URL.Path
		v.Nav = []navItem{
			{Href: "/console/", Label: "Keys", Current: path == "/console/" || strings.HasPrefix(path, "/console/keys")},
			{Href: "/console/grants", Label: "Grants", Current: path == "/console/grants"},
			{Href: "/console/audit", Label: "Audit log", Current: path == "/console/audit"},
			{Href: "/console/portal", Label: "Open a tenant's portal", Current: path == "/console/portal"},
		}
		ctx := admin.WithCaller(r.Context(), p, admin.ClientIP(r), admin.RequestID(r))
		fn(w, r.WithContext(ctx), v)
	}
}
