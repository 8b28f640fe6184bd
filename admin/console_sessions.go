package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// consoleData is an operator's session as stored.
type consoleData struct {
	ActorType string `json:"actor_type"`
	Name      string `json:"name"`
	Role      Role   `json:"role"`
}

// StartConsoleSession starts a console session for p, an operator an
// authenticating front (admin token, loopback link, single sign-on) has
// vouched for, and returns its token and expiry.
func (s *Service) StartConsoleSession(ctx context.Context, p Principal) (token string, expires time.Time, err error) {
	if p.Tenant != "" || p.Role == "" || p.Actor.Name == "" {
		return "", time.Time{}, errors.New("console: only an operator with a role and a name may sign in")
	}
	return s.putOperator(ctx, store.SessionConsole, p, ConsoleSessionTTL)
}

// ConsoleSessionOf returns the operator a console session token opens;
// store.ErrNotFound for an unknown, forged, ended or expired one.
func (s *Service) ConsoleSessionOf(ctx context.Context, token string) (Principal, error) {
	st, err := s.session(ctx, store.SessionConsole, token)
	if err != nil {
		return Principal{}, err
	}
	return operatorOf(st)
}

// NewConsoleLink returns the code of a one-time console sign-in as p
// (valid ConsoleLinkTTL): what `keygate serve` prints when no admin token
// is configured.
func (s *Service) NewConsoleLink(ctx context.Context, p Principal) (code string, err error) {
	code, _, err = s.putOperator(ctx, store.SessionConsoleLink, p, ConsoleLinkTTL)
	return code, err
}

// RedeemConsoleLink uses up a console link's code and returns the
// operator it signs in; store.ErrNotFound for a used, unknown or expired one.
func (s *Service) RedeemConsoleLink(ctx context.Context, code string) (Principal, error) {
	id, sum, ok := splitToken(code)
	if !ok {
		return Principal{}, fmt.Errorf("console link %w", store.ErrNotFound)
	}
	st, err := s.db.TakeSession(ctx, store.SessionConsoleLink, id, sum, s.cfg.Now().UTC())
	if err != nil {
		return Principal{}, err
	}
	return operatorOf(st)
}

func (s *Service) putOperator(ctx context.Context, kind string, p Principal, ttl time.Duration) (string, time.Time, error) {
	data, err := json.Marshal(consoleData{ActorType: p.Actor.Type, Name: p.Actor.Name, Role: p.Role})
	if err != nil {
		return "", time.Time{}, err
	}
	id, token, sum, err := newSessionToken()
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.cfg.Now().UTC()
	exp := now.Add(ttl)
	err = s.db.PutSession(ctx, store.Session{ID: id, Kind: kind, SecretHash: sum, Data: data, CreatedAt: now, ExpiresAt: exp})
	return token, exp, err
}

func operatorOf(st store.Session) (Principal, error) {
	var d consoleData
	if err := json.Unmarshal(st.Data, &d); err != nil {
		return Principal{}, fmt.Errorf("console session: %w", err)
	}
	return Principal{Actor: store.Actor{Type: d.ActorType, Name: d.Name}, Role: d.Role}, nil
}
