package server

import (
	"context"
	"errors"
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
		if err := c.LogIn(w, r, id.Principal()); err != nil {
			s.log.Error("console: starting a single sign-on session", slog.Any("identity", id), slog.Any("error", err))
			sso.WriteError(w, r, errors.New("the console session could not be started; the server's log says why"))
		}
	})
}
