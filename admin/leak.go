package admin

import (
	"context"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// Leak is where a key was found in public, as a secret scanner reports it.
type Leak struct {
	URL    string // where it was found (may be empty)
	Source string // what held it: content, commit, issue_comment, …
	Type   string // the scanner's name for the key's format
}

// Bounds of a leak report's fields, so that a report cannot bloat the
// audit log.
const (
	maxLeakURL   = 2048
	maxLeakField = 128
)

// ReportLeak records that key id was found in public: the audit event
// key.leaked, with where, and its webhook. It changes nothing of the key
// (revoking it is Revoke's); the caller needs keys:revoke.
func (s *Service) ReportLeak(ctx context.Context, id string, l Leak) (keys.Record, error) {
	if _, err := s.key(ctx, id, PermKeysRevoke, "report leaked keys"); err != nil {
		return keys.Record{}, err
	}
	return s.db.KeyEvent(ctx, id, store.ActionKeyLeaked, map[string]any{
		"url": clip(l.URL, maxLeakURL), "source": clip(l.Source, maxLeakField), "token_type": clip(l.Type, maxLeakField),
	})
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
