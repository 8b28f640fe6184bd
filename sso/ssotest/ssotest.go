// Package ssotest runs a real OpenID Connect provider on loopback for
// tests of single sign-on: zitadel's OpenID Provider
// (github.com/zitadel/oidc), with its example login page and in-memory
// storage, taught groups (a "groups" scope, and a groups claim in the ID
// token when asked and at the userinfo endpoint). Tests import it; the
// keygate binary does not.
package ssotest

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is a user of the provider. Its password is Password(Username).
type User struct {
	ID, Username, Email string
	Groups              []string
}

// Password is the password of the user named username.
func Password(username string) string { return "pw-" + username }

// Users are the provider's users: an admin, a viewer and a user in no
// group a console maps (with the console's usual keygate-admins and
// keygate-viewers groups).
var Users = []User{
	{ID: "u-ada", Username: "ada", Email: "ada@example.com", Groups: []string{"staff", "keygate-admins"}},
	{ID: "u-vic", Username: "vic", Email: "vic@example.com", Groups: []string{"keygate-viewers"}},
	{ID: "u-sam", Username: "sam", Email: "sam@example.com", Groups: []string{"sales"}},
}

// Client is the one client the provider knows: a web client with a
// secret, which PKCE may also protect.
const (
	ClientID     = "keygate"
	ClientSecret = "keygate-secret"
)

// Provider is a running provider.
type Provider struct {
	Issuer string // http://127.0.0.1:<port>
}

// LoginPath is where the provider's login form posts, under Issuer; its
// fields are id (the auth request), username and password.
const LoginPath = "/login/username"

// Start starts the provider on loopback, with Users and the client, whose
// redirect URIs are redirects, and stops it when t ends.
func Start(t testing.TB, redirects ...string) *Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	users := map[string]*storage.User{}
	groups := map[string][]string{}
	for _, u := range Users {
		users[u.ID] = &storage.User{ID: u.ID, Username: u.Username, Password: Password(u.Username),
			FirstName: strings.ToUpper(u.Username[:1]) + u.Username[1:], LastName: "Test",
			Email: u.Email, EmailVerified: true, PreferredLanguage: language.English}
		groups[u.ID] = u.Groups
	}
	clients := map[string]*storage.Client{ClientID: storage.WebClient(ClientID, ClientSecret, redirects...)}
	st := &groupStorage{Storage: storage.NewStorageWithClients(userStore{users}, clients), groups: groups}
	srv := &http.Server{Handler: exampleop.SetupServer(issuer, st, nil, false)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &Provider{Issuer: issuer}
}

type userStore struct{ users map[string]*storage.User }

func (s userStore) GetUserByID(id string) *storage.User { return s.users[id] }
func (s userStore) GetUserByUsername(name string) *storage.User {
	for _, u := range s.users {
		if u.Username == name {
			return u
		}
	}
	return nil
}
func (s userStore) ExampleClientID() string { return "service" }

// groupStorage is the example storage with groups.
type groupStorage struct {
	*storage.Storage
	groups map[string][]string // by user id
}

func (s *groupStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return groupsClient{c}, nil
}

// SetUserinfoFromRequest fills the ID token: groups when asked for.
func (s *groupStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, "groups") {
		ui.AppendClaims("groups", s.groups[req.GetSubject()])
	}
	return nil
}

// SetUserinfoFromToken fills the userinfo answer: groups always.
func (s *groupStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	ui.AppendClaims("groups", s.groups[ui.Subject])
	return nil
}

// groupsClient lets the client ask for the groups scope.
type groupsClient struct{ op.Client }

func (c groupsClient) IsScopeAllowed(scope string) bool {
	return scope == "groups" || c.Client.IsScopeAllowed(scope)
}
