// Package sso signs operators in to the console with an OpenID Connect
// identity provider: the authorization code flow with PKCE (S256), the
// state, nonce and verifier kept in an encrypted, short-lived cookie, the
// ID token verified (signature, issuer, audience, expiry, nonce), and the
// user's groups or roles mapped to an operator role.
//
// A provider that cannot be reached does not stop Keygate: New logs it
// and returns a Provider that discovers the provider again at the next
// login, which until then gets a page saying the provider is down (503).
package sso

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Provider signs operators in with one identity provider. It is safe for
// concurrent use.
type Provider struct {
	cfg    Config
	seal   *sealer
	log    *slog.Logger
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	disc    *discovered // nil until discovery succeeds
	lastTry time.Time
	lastErr error
}

// discovered is what the provider's discovery document gives.
type discovered struct {
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config // without RedirectURL: set per sign-in
}

// New checks cfg (reading ClientSecretEnv from the environment) and
// tries to discover the identity provider within ctx. A provider that
// cannot be reached is logged, not returned: the server starts, and each
// login tries again (at most every few seconds) until it answers.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	cfg, err := cfg.Check("console.oidc", os.LookupEnv)
	if err != nil {
		return nil, err
	}
	s, err := newSealer(cfg.ClientSecret)
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, seal: s, log: cfg.Log, client: cfg.Client, now: cfg.Now}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.client == nil {
		p.client = &http.Client{Timeout: httpTimeout}
	}
	if p.now == nil {
		p.now = time.Now
	}
	if _, err := p.discover(ctx); err != nil {
		p.log.Warn("console sign-in: the identity provider cannot be reached; sign-in will try again at the next login",
			"issuer", cfg.Issuer, "err", err)
	} else {
		p.log.Info("console sign-in: identity provider discovered", "issuer", cfg.Issuer)
	}
	return p, nil
}

// Ready reports whether the identity provider has been discovered,
// trying again if the last try is old enough: nil, or ErrUnavailable
// wrapped with the reason.
func (p *Provider) Ready(ctx context.Context) error {
	_, err := p.discover(ctx)
	return err
}

func (p *Provider) discover(ctx context.Context) (*discovered, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.disc != nil {
		return p.disc, nil
	}
	if !p.lastTry.IsZero() && p.now().Sub(p.lastTry) < discoveryRetry {
		return nil, p.lastErr
	}
	p.lastTry = p.now()
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, p.client), p.cfg.Issuer)
	if err != nil {
		p.lastErr = fmt.Errorf("%w: %s: %v", ErrUnavailable, p.cfg.Issuer, err)
		return nil, p.lastErr
	}
	p.disc = &discovered{
		provider: op,
		verifier: op.Verifier(&oidc.Config{ClientID: p.cfg.ClientID, Now: p.now}),
		oauth: oauth2.Config{
			ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret,
			Endpoint: op.Endpoint(), Scopes: p.cfg.Scopes,
		},
	}
	p.lastErr = nil
	return p.disc, nil
}

// Begin starts a sign-in: it remembers a fresh state, nonce and PKCE
// verifier in the state cookie and redirects the browser to the identity
// provider. When the provider is down it answers with WriteError's page.
func (p *Provider) Begin(w http.ResponseWriter, r *http.Request) {
	d, err := p.discover(r.Context())
	if err != nil {
		p.log.Warn("console sign-in: cannot start", "err", err)
		WriteError(w, r, err)
		return
	}
	redirect := p.redirectURL(r)
	st := state{Redirect: redirect, Verifier: oauth2.GenerateVerifier(), Expires: p.now().Add(StateTTL).Unix()}
	if st.State, err = randomText(); err == nil {
		st.Nonce, err = randomText()
	}
	var value string
	if err == nil {
		value, err = p.seal.seal(st)
	}
	if err != nil {
		p.log.Error("console sign-in: cannot start", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	cookiePath, secure := cookieScope(redirect)
	http.SetCookie(w, stateCookie(value, cookiePath, secure, int(StateTTL/time.Second)))
	conf := d.oauth
	conf.RedirectURL = redirect
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, conf.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce)), http.StatusFound)
}

// redirectURL is the configured one, or the callback on the scheme and
// host the browser used: the provider only accepts it if it is
// registered, so a forged Host header leads nowhere.
func (p *Provider) redirectURL(r *http.Request) string {
	if p.cfg.RedirectURL != "" {
		return p.cfg.RedirectURL
	}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: r.Host, Path: CallbackPath}).String()
}

// cookieScope returns the state cookie's path, the folder of the
// callback (/console/oidc, under a proxy's prefix if any, so that the
// cookie reaches the callback and nothing else), and whether it is Secure.
func cookieScope(redirect string) (string, bool) {
	u, err := url.Parse(redirect)
	if err != nil {
		return path.Dir(CallbackPath), false
	}
	return path.Dir(u.Path), u.Scheme == "https"
}

// Finish completes a sign-in at the callback: it checks the state against
// the cookie's (constant time), exchanges the code with the PKCE
// verifier, verifies the ID token and its nonce, reads the user's claims
// (from the userinfo endpoint too when the ID token lacks the email or
// the roles claim) and maps them to a role. The state cookie is cleared
// whatever happens: a sign-in is finished once. Errors wrap the package's
// Err values; WriteError renders them.
func (p *Provider) Finish(ctx context.Context, w http.ResponseWriter, r *http.Request) (Identity, error) {
	id, err := p.finish(ctx, w, r)
	if err != nil {
		p.log.Warn("console sign-in refused", "issuer", p.cfg.Issuer, "err", err)
		return Identity{}, err
	}
	p.log.Info("console sign-in", "identity", id)
	return id, nil
}

func (p *Provider) finish(ctx context.Context, w http.ResponseWriter, r *http.Request) (Identity, error) {
	q := r.URL.Query()
	c, cookieErr := r.Cookie(CookieName)
	if cookieErr == nil {
		// Cleared where it was set: the path comes from the cookie's own
		// redirect URL when it opens (expired or not: the zero time), else
		// the request's folder.
		clearPath := path.Dir(r.URL.Path)
		secure := r.TLS != nil
		if st, err := p.seal.open(c.Value, time.Time{}); err == nil {
			clearPath, secure = cookieScope(st.Redirect)
		}
		http.SetCookie(w, stateCookie("", clearPath, secure, -1))
	}
	if e := q.Get("error"); e != "" {
		msg := e
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		return Identity{}, fmt.Errorf("%w: %s", ErrDenied, trim(msg, 300))
	}
	if cookieErr != nil {
		return Identity{}, fmt.Errorf("%w (start again from the console's sign-in page)", ErrCookie)
	}
	st, err := p.seal.open(c.Value, p.now())
	if err != nil {
		return Identity{}, fmt.Errorf("%w (start again from the console's sign-in page)", err)
	}
	if got := q.Get("state"); subtle.ConstantTimeCompare([]byte(got), []byte(st.State)) != 1 {
		return Identity{}, ErrState
	}
	code := q.Get("code")
	if code == "" {
		return Identity{}, ErrNoCode
	}
	d, err := p.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, p.client)
	conf := d.oauth
	conf.RedirectURL = st.Redirect
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode != "" {
			return Identity{}, fmt.Errorf("%w: %s %s", ErrExchange, re.ErrorCode, trim(re.ErrorDescription, 200))
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrExchange, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: the token response has no id_token (is openid among the scopes?)", ErrToken)
	}
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrToken, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return Identity{}, fmt.Errorf("%w: its nonce is not the one this sign-in sent", ErrToken)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrToken, err)
	}
	p.addUserInfo(ctx, d, tok, idt.Subject, claims)
	return p.identity(idt.Subject, claims)
}

// addUserInfo fills the claims the ID token lacks (the email, the roles
// claim) from the userinfo endpoint, as providers that keep the ID token
// small expect. A userinfo answer for another subject is ignored.
func (p *Provider) addUserInfo(ctx context.Context, d *discovered, tok *oauth2.Token, subject string, claims map[string]any) {
	_, hasRoles := claimValues(claims, p.cfg.RolesClaim)
	if (hasRoles && claims["email"] != nil) || d.provider.UserInfoEndpoint() == "" {
		return
	}
	ui, err := d.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		p.log.Warn("console sign-in: userinfo", "issuer", p.cfg.Issuer, "err", err)
		return
	}
	if ui.Subject != subject {
		p.log.Warn("console sign-in: userinfo is for another subject; ignored", "issuer", p.cfg.Issuer)
		return
	}
	more := map[string]any{}
	if err := ui.Claims(&more); err != nil {
		p.log.Warn("console sign-in: userinfo", "issuer", p.cfg.Issuer, "err", err)
		return
	}
	for k, v := range more {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
}

// identity maps verified claims to who signed in and their role.
func (p *Provider) identity(subject string, claims map[string]any) (Identity, error) {
	id := Identity{Subject: subject, Email: emailOf(claims), Name: stringClaim(claims, "name")}
	if id.Name == "" {
		id.Name = stringClaim(claims, "preferred_username")
	}
	groups, ok := claimValues(claims, p.cfg.RolesClaim)
	if p.cfg.RolesClaim == "email" { // mapping people by address: only a verified one
		groups, ok = nil, id.Email != ""
		if ok {
			groups = []string{id.Email}
		}
	}
	id.Groups = groups
	role, mapped := mapRole(p.cfg.Roles, groups)
	switch {
	case !ok:
		return id, fmt.Errorf("%w: %s's sign-in carries no %q claim; the identity provider must send it (a groups mapper or scope)",
			ErrNoRole, id.ActorName(), p.cfg.RolesClaim)
	case !mapped:
		return id, fmt.Errorf("%w: %s is in %q %v, none of which console.oidc.roles maps to admin or viewer",
			ErrNoRole, id.ActorName(), p.cfg.RolesClaim, groups)
	}
	id.Role = role
	return id, nil
}

// trim bounds text the provider sends before it is shown or logged.
func trim(s string, n int) string {
	r := []rune(strings.ToValidUTF8(s, "?"))
	if len(r) > n {
		return string(r[:n]) + "…"
	}
	return string(r)
}
