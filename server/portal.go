package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/web"
)

// portal builds the tenants' API-keys portal over svc.
func (s *Server) portal(svc *admin.Service) (*web.Portal, error) {
	pc := s.cfg.Portal
	return web.NewPortal(web.PortalConfig{
		Service:        svc,
		Branding:       web.Branding{Title: pc.Title, LogoURL: pc.LogoURL, AccentColor: pc.AccentColor},
		FrameAncestors: pc.FrameAncestors,
		Secure:         strings.HasPrefix(pc.PublicURL, "https://"),
		Log:            s.log.With(slog.String("component", "portal")),
	})
}

// mountConsole serves the operators' console at /console/ on mux.
func (s *Server) mountConsole(mux *http.ServeMux, svc *admin.Service, tokens *admin.Tokens) error {
	c, err := web.NewConsole(web.ConsoleConfig{Service: svc, Tokens: tokens, Log: s.log.With(slog.String("component", "console"))})
	if err != nil {
		return err
	}
	mux.Handle("/console/", c)
	s.mu.Lock()
	s.console = c
	s.mu.Unlock()
	return nil
}

// SetConsoleLinkOutput sets where Run prints the one-time console link
// when no admin token is configured (default os.Stderr).
func (s *Server) SetConsoleLinkOutput(w io.Writer) { s.consoleLinkOut = w }

// printConsoleLink prints, when no admin token is configured, a one-time
// link that signs the local operator in to the console, so that `keygate
// serve` on a laptop leads straight to a working console. The link works
// from a loopback client only; it goes to the terminal, never to the log.
func (s *Server) printConsoleLink(ctx context.Context, httpAddr net.Addr) {
	tokens, err := s.cfg.AdminTokens()
	s.mu.Lock()
	c := s.console
	s.mu.Unlock()
	if err != nil || !tokens.Empty() || c == nil || s.consoleLinkOut == nil {
		return
	}
	port := "9090"
	if ta, ok := httpAddr.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
	}
	link, err := c.LoginLink(ctx, "http://"+net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		s.log.Error("console: making the sign-in link", slog.Any("error", err))
		return
	}
	fmt.Fprintf(s.consoleLinkOut, "\nKeygate console (no admin token configured): open this one-time link on this machine within %v:\n\n    %s\n\n",
		admin.ConsoleLinkTTL, link)
}
