// Package web serves Keygate's pages: the API-keys portal, where a
// tenant's own users manage their keys in a session their platform opened,
// and the console, where operators see every tenant. Both are
// server-rendered from embedded templates with one small script and no
// inline code, and both act through admin.Service with the caller their
// session makes, so that the pages, the admin API and the CLI cannot
// disagree about what anyone may do.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
)

//go:embed assets templates
var files embed.FS

// Branding is how the portal looks: the config's portal.title,
// portal.logo_url and portal.accent_color.
type Branding struct {
	Title       string
	LogoURL     string
	AccentColor string // #rgb or #rrggbb, checked by config
}

// pages holds each page's template, parsed once with the layout.
type pages map[string]*template.Template

var funcs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "never"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return ""
	},
	"join": strings.Join,
	"has": func(list []string, s string) bool {
		for _, v := range list {
			if v == s {
				return true
			}
		}
		return false
	},
}

func parsePages() (pages, error) {
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := pages{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(files, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", n, err)
		}
		out[base] = t
	}
	return out, nil
}

// view is what every page's template gets.
type view struct {
	Brand    Branding
	Title    string // of the page
	Base     string // "/portal" or "/console"
	Console  bool
	Who      string // the signed-in user or operator
	Tenant   string // the portal's tenant
	Role     string // the console operator's role
	CanWrite bool   // the console operator may change things
	Back     *backLink
	Nav      []navItem
	Error    string
	Notice   string
	Data     any
}

type navItem struct {
	Href, Label string
	Current     bool
}

type backLink struct{ URL, Label string }

// render writes page with status. It renders into a buffer first, so
// that a template error is a clean 500 and not half a page.
func (ps pages) render(w http.ResponseWriter, log *slog.Logger, status int, page string, v view) {
	var buf bytes.Buffer
	t, ok := ps[page]
	if !ok {
		log.Error("web: no such page", slog.String("page", page))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		log.Error("web: rendering a page", slog.String("page", page), slog.Any("error", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// securityHeaders sets, on every response, a Content-Security-Policy
// allowing no inline script (script-src 'self': the one embedded file),
// framing only by frameAncestors, and no sniffing, no referrer, no
// caching: pages show secrets, and the portal's links carry codes.
func securityHeaders(next http.Handler, frameAncestors, logoURL string) http.Handler {
	img := "'self' data:"
	if u, err := url.Parse(logoURL); err == nil && logoURL != "" {
		img += " " + u.Scheme + "://" + u.Host
	}
	csp := "default-src 'none'; script-src 'self'; style-src 'self'; img-src " + img +
		"; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors " + frameAncestors
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if frameAncestors == "'none'" {
			h.Set("X-Frame-Options", "DENY")
		}
		next.ServeHTTP(w, r)
	})
}

// crossOrigin refuses unsafe requests from other origins (by
// Sec-Fetch-Site, else Origin against Host) with 403: a JSON error under
// an API, a page elsewhere.
func crossOrigin(next http.Handler, apiPrefix string, ps pages, log *slog.Logger, base view) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, apiPrefix) {
			admin.WriteError(w, http.StatusForbidden, "cross_origin", "cross-origin requests may not change anything")
			return
		}
		v := base
		v.Title, v.Error = "Refused", "This request came from another site, so it was refused and nothing was changed."
		ps.render(w, log, http.StatusForbidden, "error", v)
	}))
	return cop.Handler(next)
}

// static serves the embedded stylesheet and script, and brand.css with
// the accent color.
func static(prefix string, b Branding) http.Handler {
	sub, _ := fs.Sub(files, "assets")
	fsrv := http.StripPrefix(prefix, http.FileServerFS(sub))
	brand := []byte(":root{--accent:" + b.AccentColor + "}\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.TrimPrefix(r.URL.Path, prefix) == "brand.css" {
			w.Header().Set("Content-Type", "text/css; charset=utf-8")
			w.Write(brand)
			return
		}
		fsrv.ServeHTTP(w, r)
	})
}

// keyRow is a key as the pages list it.
type keyRow struct {
	admin.KeyView
	Display string // prefix…last4
}

func rowOf(r keys.Record, now time.Time) keyRow {
	v := admin.ViewKey(r, now)
	if v.ReplacedBy != "" && v.Status == "active" {
		v.Status = "rolled"
	}
	return keyRow{KeyView: v, Display: v.Prefix + "…" + v.Last4}
}

// setCookie sets a session cookie on path, or clears it (maxAge < 0).
func setCookie(w http.ResponseWriter, name, value, path string, maxAge int, secure bool) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge, HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteStrictMode})
}
