package server

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/keygate/keygate/sso"
	"github.com/keygate/keygate/web"
)

// ssoDiscoveryTimeout bounds the first look at the identity provider
// while the server starts: one that does not answer by then is looked at
// again at the next login, and the server starts anyway.
const ssoDiscoveryTimeout = 5 * time.Second

// newSSO returns console.oidc's single sign-on and the link the console's
// sign-in page shows for it; nil, nil when console.oidc is not set.
func (s *Server) newSSO() (*sso.Provider, *web.SSOLink, error) {
	cfg, on := s.cfg.ConsoleOIDC()
	if !on {
		return nil, nil, nil
	}
	cfg.Log = s.log.With(slog.String("component", "sso"))
	ctx, cancel := context.WithTimeout(context.Background(), ssoDiscoveryTimeout)
	defer cancel()
	p, err := sso.New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return p, &web.SSOLink{URL: sso.LoginPath, Label: "Sign in with SSO"}, nil
}

// mountSSO serves single sign-on at /console/oidc/ on mux: the login
// redirects to the provider, the callback signs the operator in to c.
func (s *Server) mountSSO(mux *http.ServeMux, p *sso.Provider, c *web.Console) {
	mux.HandleFunc("GET "+sso.LoginPath, p.Begin)
	mux.HandleFunc("GET "+sso.CallbackPath, func(w http.ResponseWriter, r *http.Request) {
		id, err := p.Finish(r.Context(), w, r)
		if err != nil {
			sso.WriteError(w, r, err)
			return
		}
		b := &bounce{ResponseWriter: w}
		if err := c.LogIn(b, r, id.Principal()); err != nil {
			s.log.Error("console: starting a single sign-on session", slog.Any("identity", id), slog.Any("error", err))
			sso.WriteError(w, r, errors.New("the console session could not be started; the server's log says why"))
			return
		}
		b.finish()
	})
}

// bounce turns the console's redirect after sign-in into a page that
// goes on by itself. The callback is the end of a navigation another
// site (the provider) started, so a redirect from it is still cross-site
// and the browser would not send the console's SameSite=Strict cookie
// with it: the operator would land on the sign-in page. A navigation the
// page starts is the console's own, and carries the cookie.
type bounce struct {
	http.ResponseWriter
	redirect bool
}

func (b *bounce) WriteHeader(code int) {
	if code >= 300 && code < 400 && b.Header().Get("Location") != "" {
		b.redirect = true
		return
	}
	b.ResponseWriter.WriteHeader(code)
}

func (b *bounce) Write(p []byte) (int, error) {
	if b.redirect {
		return len(p), nil // the redirect's own little body
	}
	return b.ResponseWriter.Write(p)
}

var bouncePage = template.Must(template.New("bounce").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={{.}}">
<title>Signed in · Keygate console</title></head>
<body><p>Signed in. <a href="{{.}}">Continue to the console</a>.</p></body></html>
`))

// finish writes the page in place of the redirect, if there was one.
func (b *bounce) finish() {
	if !b.redirect {
		return
	}
	h := b.Header()
	loc := h.Get("Location")
	h.Del("Location")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	b.ResponseWriter.WriteHeader(http.StatusOK)
	_ = bouncePage.Execute(b.ResponseWriter, loc)
}
