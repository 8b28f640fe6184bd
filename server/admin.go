package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/store"
)

// newAdmin builds the key lifecycle service over db, with the server's
// formats, hasher and rules; its changes wake the server's cache.
func (s *Server) newAdmin(db store.DB, changed func()) (*admin.Service, error) {
	return newAdmin(s.cfg, s.formats, s.hasher, db, changed)
}

func newAdmin(cfg config.Config, formats *keys.Formats, hasher *keys.Hasher, db store.DB, changed func()) (*admin.Service, error) {
	form := policy.ScopeForm(cfg.Scopes.Form)
	return admin.New(admin.Config{
		Formats: formats, Hasher: hasher, Plans: cfg.PlanNames(),
		ValidScope: func(s string) error { return policy.ValidScope(form, s) },
		Grace:      cfg.Roll.Grace, Now: time.Now, Changed: changed,
		Portal: admin.PortalConfig{PublicURL: cfg.Portal.PublicURL, CodeTTL: cfg.Portal.SessionCodeTTL, SessionTTL: cfg.Portal.SessionTTL},
	}, db)
}

// NewAdmin builds the key lifecycle service over db, as the server's
// admin API has it.
func NewAdmin(cfg config.Config, db store.DB) (*admin.Service, error) {
	formats, err := keys.NewFormats(cfg.Formats())
	if err != nil {
		return nil, err
	}
	return newAdmin(cfg, formats, keys.NewHasher([]byte(cfg.Database.Pepper)), db, nil)
}

// OpenAdmin opens the key database and the lifecycle service over it,
// for the commands that manage keys and grants. The database must exist
// already (see OpenDB). Close the returned DB when done.
func OpenAdmin(ctx context.Context, cfg config.Config, log *slog.Logger) (*admin.Service, store.DB, error) {
	db, err := OpenDB(ctx, cfg, log, false)
	if err != nil {
		return nil, nil, err
	}
	svc, err := NewAdmin(cfg, db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return svc, db, nil
}
