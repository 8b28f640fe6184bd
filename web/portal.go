package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/store"
)

// PortalCookie holds a portal session's token.
const PortalCookie = "keygate_portal"

// PortalConfig configures the portal.
type PortalConfig struct {
	Service  *admin.Service
	Branding Branding
	// FrameAncestors is the CSP frame-ancestors value (portal.frame_ancestors).
	FrameAncestors string
	// Secure marks the cookie Secure: portal.public_url is https.
	Secure bool
	Log    *slog.Logger
}

// Portal serves /portal/ on the portal listener: the pages, their assets
// and the JSON API, all behind the keygate_portal cookie (an admin token
// is never accepted here).
type Portal struct {
	site
	cfg PortalConfig
	api *admin.PortalAPI
	h   http.Handler
}

// NewPortal returns the portal.
func NewPortal(cfg PortalConfig) (*Portal, error) {
	if cfg.Service == nil || cfg.Log == nil {
		return nil, errors.New("web: portal: service and logger are required")
	}
	if cfg.FrameAncestors == "" {
		cfg.FrameAncestors = "'none'"
	}
	ps, err := parsePages()
	if err != nil {
		return nil, err
	}
	api, err := admin.NewPortalAPI(cfg.Service, cfg.Log)
	if err != nil {
		return nil, err
	}
	p := &Portal{site: site{name: "portal", svc: cfg.Service, log: cfg.Log, pages: ps}, cfg: cfg, api: api}
	mux := http.NewServeMux()
	mux.Handle("GET /portal/static/", static("/portal/static/", cfg.Branding))
	mux.HandleFunc("GET /portal/session/{code}", p.redeem)
	mux.HandleFunc("POST /portal/api/v1/logout", p.apiLogout)
	mux.Handle(admin.PortalAPIPrefix, p.apiSession(api))
	mux.HandleFunc("GET /portal/{$}", p.page(p.list))
	mux.HandleFunc("GET /portal/keys/new", p.page(p.newKey))
	mux.HandleFunc("POST /portal/keys", p.page(p.createKey))
	mux.HandleFunc("GET /portal/keys/{id}", p.page(p.showKey))
	mux.HandleFunc("GET /portal/keys/{id}/revoke", p.page(p.confirmRevoke))
	mux.HandleFunc("POST /portal/keys/{id}/revoke", p.page(p.revokeKey))
	mux.HandleFunc("GET /portal/keys/{id}/roll", p.page(p.confirmRoll))
	mux.HandleFunc("POST /portal/keys/{id}/roll", p.page(p.rollKey))
	mux.HandleFunc("GET /portal/audit", p.page(p.audit))
	mux.HandleFunc("POST /portal/logout", p.logout)
	mux.HandleFunc("/portal/", func(w http.ResponseWriter, r *http.Request) {
		p.fail(w, p.base(), http.StatusNotFound, "There is no such page.")
	})
	base := p.base()
	p.h = securityHeaders(crossOrigin(mux, admin.PortalAPIPrefix, ps, cfg.Log, base), cfg.FrameAncestors, cfg.Branding.LogoURL)
	return p, nil
}

// ServeHTTP implements http.Handler.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.h.ServeHTTP(w, r) }

func (p *Portal) base() view {
	return view{Brand: p.cfg.Branding, Base: "/portal"}
}

// session reads the cookie's session; ok is false without a live one.
func (p *Portal) session(r *http.Request) (admin.PortalSession, bool) {
	c, err := r.Cookie(PortalCookie)
	if err != nil {
		return admin.PortalSession{}, false
	}
	ps, err := p.svc.PortalSessionOf(r.Context(), c.Value)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			p.log.Error("portal: reading a session", slog.Any("error", err))
		}
		return admin.PortalSession{}, false
	}
	return ps, true
}

// caller makes the session the caller of what the request does.
func caller(r *http.Request, ps admin.PortalSession) context.Context {
	return admin.WithCaller(r.Context(), ps.Principal(), admin.ClientIP(r), admin.RequestID(r))
}

func (p *Portal) apiSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps, ok := p.session(r)
		if !ok {
			admin.WriteError(w, http.StatusUnauthorized, "unauthorized", "no portal session: open the portal from your platform's settings again")
			return
		}
		next.ServeHTTP(w, r.WithContext(caller(r, ps)))
	})
}

// redeem turns a link's code into the session cookie and sends the user
// to the keys; a used, unknown or expired code gets an error page and no
// cookie.
func (p *Portal) redeem(w http.ResponseWriter, r *http.Request) {
	token, ps, err := p.svc.RedeemPortalCode(r.Context(), r.PathValue("code"))
	if err != nil {
		status, msg := http.StatusNotFound, "This link has been used already, has expired, or is not a portal link. Go back to your platform and open the API keys page again."
		if !errors.Is(err, store.ErrNotFound) {
			p.log.Error("portal: redeeming a code", slog.Any("error", err))
			status, msg = http.StatusServiceUnavailable, "The key database could not be reached. Try again in a moment."
		}
		v := p.base()
		v.Title = "Link not valid"
		p.fail(w, v, status, msg)
		return
	}
	setCookie(w, PortalCookie, token, "/portal", int(time.Until(ps.ExpiresAt).Seconds()), p.cfg.Secure)
	p.log.Info("portal: session started", slog.String("tenant", ps.Tenant), slog.String("user", ps.User))
	http.Redirect(w, r, "/portal/", http.StatusSeeOther)
}

func (p *Portal) apiLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(PortalCookie); err == nil {
		if err := p.svc.EndSession(r.Context(), store.SessionPortal, c.Value); err != nil {
			p.log.Error("portal: ending a session", slog.Any("error", err))
		}
	}
	setCookie(w, PortalCookie, "", "/portal", -1, p.cfg.Secure)
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{\"logged_out\":true}\n"))
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request) {
	ps, _ := p.session(r)
	if c, err := r.Cookie(PortalCookie); err == nil {
		if err := p.svc.EndSession(r.Context(), store.SessionPortal, c.Value); err != nil {
			p.log.Error("portal: ending a session", slog.Any("error", err))
		}
	}
	setCookie(w, PortalCookie, "", "/portal", -1, p.cfg.Secure)
	v := p.base()
	v.Title, v.Back = "Signed out", backOf(ps.ReturnURL)
	v.Notice = "You are signed out of the API keys page."
	p.pages.render(w, p.log, http.StatusOK, "error", v)
}

// page runs fn for a request with a live session, as its user; without
// one it shows why.
func (p *Portal) page(fn func(w http.ResponseWriter, r *http.Request, v view)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ps, ok := p.session(r)
		if !ok {
			v := p.base()
			v.Title, v.Error = "Session ended", "You are not signed in to the API keys page, or your session has ended. Open it again from your platform's settings."
			// A cross-site navigation does not carry a SameSite=Strict
			// cookie; a link followed from this page (same site) does.
			if r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Site") == "cross-site" {
				v.Data = map[string]string{"Continue": r.URL.Path}
			}
			p.pages.render(w, p.log, http.StatusUnauthorized, "error", v)
			return
		}
		v := p.base()
		v.Who, v.Tenant, v.Back = ps.User, ps.Tenant, backOf(ps.ReturnURL)
		p.navFor(&v, ps, r.URL.Path)
		fn(w, r.WithContext(caller(r, ps)), v)
	}
}

func (p *Portal) navFor(v *view, ps admin.PortalSession, path string) {
	v.Nav = []navItem{{Href: "/portal/", Label: "API keys", Current: path == "/portal/" || strings.HasPrefix(path, "/portal/keys")}}
	if ps.Principal().Can(admin.PermAuditRead) {
		v.Nav = append(v.Nav, navItem{Href: "/portal/audit", Label: "Activity", Current: path == "/portal/audit"})
	}
}

// backOf is the "back to <platform>" link: return_url was checked (http
// or https) when the session was opened, and is checked again here.
func backOf(returnURL string) *backLink {
	if returnURL == "" || admin.ValidReturnURL(returnURL) != nil {
		return nil
	}
	u, _ := url.Parse(returnURL)
	return &backLink{URL: returnURL, Label: "Back to " + u.Host}
}
