package store

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// Session kinds: what a session row is. A portal code is the single-use
// link a platform's backend hands its user; redeeming it starts a portal
// session. A console session is an operator signed in to the console; a
// console link is the single-use sign-in link `keygate serve` prints when
// no admin token is configured.
const (
	SessionPortalCode  = "portal_code"
	SessionPortal      = "portal"
	SessionConsole     = "console"
	SessionConsoleLink = "console_link"
)

// Session is a browser session or a single-use code, as the key database
// keeps it: the public half of its token (ID) and the SHA-256 of the
// secret half, never the secret, so that a copy of the database opens no
// session. Data is what the session may do, as JSON its owner reads.
type Session struct {
	ID         string
	Kind       string
	SecretHash [32]byte
	Data       []byte
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// Sessions keeps sessions in the key database, so that any replica can
// redeem a code another one issued, and sessions outlive a restart.
type Sessions interface {
	// PutSession stores s (ErrConflict if its id exists) and deletes the
	// sessions that have expired.
	PutSession(ctx context.Context, s Session) error
	// Session returns the session of kind with id whose secret hashes to
	// secretHash (compared in constant time) and that has not expired at
	// now; ErrNotFound otherwise, whichever the reason.
	Session(ctx context.Context, kind, id string, secretHash [32]byte, now time.Time) (Session, error)
	// TakeSession is Session that also deletes it, in one transaction:
	// of two concurrent takes of one code, one gets it and the other
	// ErrNotFound.
	TakeSession(ctx context.Context, kind, id string, secretHash [32]byte, now time.Time) (Session, error)
	// DeleteSession ends a session (none: no error).
	DeleteSession(ctx context.Context, kind, id string) error
}

const (
	sessionColumns    = `id, kind, secret_hash, data, created_at, expires_at`
	stmtInsertSession = `INSERT INTO sessions (` + sessionColumns + `) VALUES ($1, $2, $3, $4, $5, $6)`
	stmtSelectSession = `SELECT ` + sessionColumns + ` FROM sessions WHERE id = $1 AND kind = $2`
	stmtDeleteSession = `DELETE FROM sessions WHERE id = $1 AND kind = $2`
	stmtPruneSessions = `DELETE FROM sessions WHERE expires_at <= $1`
)

// PutSession implements Sessions.
func (k *keyDB) PutSession(ctx context.Context, s Session) error {
	if s.ID == "" || s.Kind == "" || s.ExpiresAt.IsZero() {
		return errors.New("session: id, kind and expiry are required")
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = time.Now()
	}
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	err := k.d.tx(ctx, func(q queries) error {
		if err := q.exec(ctx, stmtPruneSessions, q.time(dbTime(s.CreatedAt))); err != nil {
			return err
		}
		return q.exec(ctx, stmtInsertSession, s.ID, s.Kind, s.SecretHash[:], string(s.Data),
			q.time(dbTime(s.CreatedAt)), q.time(dbTime(s.ExpiresAt)))
	})
	return k.failed(k.named(err, "session"))
}

// Session implements Sessions.
func (k *keyDB) Session(ctx context.Context, kind, id string, secretHash [32]byte, now time.Time) (Session, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	s, err := k.reads.session(ctx, stmtSelectSession, id, kind)
	if err == nil {
		err = s.check(secretHash, now)
	}
	return s, k.failed(k.named(err, "session"))
}

// TakeSession implements Sessions.
func (k *keyDB) TakeSession(ctx context.Context, kind, id string, secretHash [32]byte, now time.Time) (Session, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	var s Session
	err := k.d.tx(ctx, func(q queries) error {
		var err error
		if s, err = q.session(ctx, stmtSelectSession, id, kind); err != nil {
			return err
		}
		if err := s.check(secretHash, now); err != nil {
			return err
		}
		n, err := q.affected(ctx, stmtDeleteSession, id, kind)
		if err == nil && n == 0 {
			err = errTaken // another transaction took it first
		}
		return err
	})
	if err != nil {
		return Session{}, k.failed(k.named(err, "session"))
	}
	return s, nil
}

// DeleteSession implements Sessions.
func (k *keyDB) DeleteSession(ctx context.Context, kind, id string) error {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	err := k.d.tx(ctx, func(q queries) error { return q.exec(ctx, stmtDeleteSession, id, kind) })
	return k.failed(err)
}

var (
	errWrongSecret = fmt.Errorf("session %w", ErrNotFound)
	errExpired     = fmt.Errorf("session %w", ErrNotFound)
	errTaken       = fmt.Errorf("session %w", ErrNotFound)
)

// check refuses a session whose secret is not the one given or that has
// expired at now. Both are "not found": the caller cannot tell them apart
// from a session that never existed.
func (s Session) check(secretHash [32]byte, now time.Time) error {
	if subtle.ConstantTimeCompare(s.SecretHash[:], secretHash[:]) != 1 {
		return errWrongSecret
	}
	if !now.Before(s.ExpiresAt) {
		return errExpired
	}
	return nil
}

func (s sqliteQueries) session(ctx context.Context, query string, args ...any) (Session, error) {
	var out Session
	var hash []byte
	var data string
	err := s.row(ctx, query, args).Scan(&out.ID, &out.Kind, &hash, &data, micros{&out.CreatedAt}, micros{&out.ExpiresAt})
	copy(out.SecretHash[:], hash)
	out.Data = []byte(data)
	return out, err
}

func (p pgQueries) session(ctx context.Context, query string, args ...any) (Session, error) {
	var out Session
	var hash []byte
	var data string
	err := p.q.QueryRow(ctx, query, args...).Scan(&out.ID, &out.Kind, &hash, &data, pgTimeDest{&out.CreatedAt}, pgTimeDest{&out.ExpiresAt})
	copy(out.SecretHash[:], hash)
	out.Data = []byte(data)
	return out, err
}
