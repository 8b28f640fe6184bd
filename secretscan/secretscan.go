// Package secretscan is Keygate's side of GitHub's secret scanning
// partner program: GitHub finds keys of Keygate's formats in public code
// (keys.Format.Pattern is what to register) and posts them to
// POST /secret-scanning/github. The Handler checks GitHub's signature
// (ECDSA P-256 over the raw body, with the key GitHub's keys endpoint
// names), then for each token checks its format and checksum without a
// lookup, finds it by hash, revokes it (or only tells, per the config),
// records key.leaked, and answers GitHub's feedback: true_positive or
// false_positive per token.
package secretscan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// Path is where GitHub posts the tokens it found.
const Path = "/secret-scanning/github"

// DefaultKeysURL is GitHub's list of the keys it signs secret scanning
// messages with.
const DefaultKeysURL = "https://api.github.com/meta/public_keys/secret_scanning"

// The headers GitHub signs its messages with.
const (
	HeaderKeyID     = "Github-Public-Key-Identifier"
	HeaderSignature = "Github-Public-Key-Signature"
)

// Action is what a key GitHub reports is done with.
type Action string

// Actions: revoke it at once (the default), or only tell (the key.leaked
// audit event and webhook) and leave revoking to a person.
const (
	ActionRevoke Action = "revoke"
	ActionNotify Action = "notify"
)

// ParseAction reads secret_scanning.action.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionRevoke, ActionNotify:
		return a, nil
	case "":
		return ActionRevoke, nil
	}
	return "", fmt.Errorf("%q is not revoke or notify", s)
}

// ValidateSettings checks secret_scanning.action and
// secret_scanning.github.keys_url (empty: the default), naming the field
// at fault.
func ValidateSettings(action, keysURL string) error {
	var errs []error
	if _, err := ParseAction(action); err != nil {
		errs = append(errs, fmt.Errorf("secret_scanning.action: %w", err))
	}
	if keysURL != "" {
		if err := checkKeysURL(keysURL); err != nil {
			errs = append(errs, fmt.Errorf("secret_scanning.github.keys_url: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Labels of GitHub's feedback.
const (
	labelTrue  = "true_positive"
	labelFalse = "false_positive"
)

// maxBody bounds a message: GitHub may send many matches at once.
const maxBody = 5 << 20

// Config is how the handler checks and acts.
type Config struct {
	Formats *keys.Formats
	Hasher  *keys.Hasher
	Action  Action // empty: revoke
	// KeysURL is where GitHub's public keys are read; empty:
	// DefaultKeysURL.
	KeysURL string
	// Client reads KeysURL; nil: one with a 10 s timeout.
	Client *http.Client
}

// keyFinder finds a key by hash. store.DB implements it.
type keyFinder interface {
	KeyByHash(ctx context.Context, h keys.Hash) (keys.Record, error)
}

var _ keyFinder = (store.DB)(nil)

// lifecycle revokes keys and records leaks. *admin.Service implements it.
type lifecycle interface {
	Revoke(ctx context.Context, id string) (keys.Record, error)
	ReportLeak(ctx context.Context, id string, l admin.Leak) (keys.Record, error)
}

var _ lifecycle = (*admin.Service)(nil)

// Handler serves POST /secret-scanning/github.
type Handler struct {
	cfg  Config
	db   keyFinder
	svc  lifecycle
	log  *slog.Logger
	keys *publicKeys
}

var _ http.Handler = (*Handler)(nil)

// New builds the handler. It reads GitHub's keys only when a message
// names one it does not know.
func New(cfg Config, db keyFinder, svc lifecycle, log *slog.Logger) (*Handler, error) {
	if cfg.Formats == nil || cfg.Hasher == nil || db == nil || svc == nil || log == nil {
		return nil, errors.New("secretscan: formats, hasher, database, lifecycle service and logger are required")
	}
	a, err := ParseAction(string(cfg.Action))
	if err != nil {
		return nil, fmt.Errorf("secret_scanning.action: %w", err)
	}
	cfg.Action = a
	if cfg.KeysURL == "" {
		cfg.KeysURL = DefaultKeysURL
	}
	if err := checkKeysURL(cfg.KeysURL); err != nil {
		return nil, fmt.Errorf("secret_scanning.github.keys_url: %w", err)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Handler{cfg: cfg, db: db, svc: svc, log: log, keys: newPublicKeys(cfg.KeysURL, cfg.Client)}, nil
}

// match is one token GitHub found.
type match struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// Feedback is GitHub's feedback on one token: whether it is a real key.
type Feedback struct {
	TokenHash string `json:"token_hash"` // SHA-256 of the token, hex
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// ServeHTTP checks the message's signature (401 when it is missing or
// bad, and nothing is done), then acts on every token and answers the
// feedback (200). A database failure is 503, so that GitHub sends the
// message again; what was done before it is done again harmlessly.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, errorBody("method_not_allowed", "POST the tokens GitHub found"))
		return
	}
	body, status, err := readBody(w, r)
	if err != nil {
		answer(w, status, errorBody("bad_request", err.Error()))
		return
	}
	switch err := h.keys.verify(r.Context(), r.Header.Get(HeaderKeyID), r.Header.Get(HeaderSignature), body); {
	case errors.Is(err, errUnverifiable):
		h.log.Warn("secret scanning: cannot check GitHub's signature now", slog.Any("error", err))
		w.Header().Set("Retry-After", "60")
		answer(w, http.StatusServiceUnavailable, errorBody("unavailable", "GitHub's signing keys cannot be read now; send again later"))
		return
	case err != nil:
		h.log.Warn("secret scanning: refused a message", slog.String("reason", err.Error()), slog.String("remote", r.RemoteAddr))
		answer(w, http.StatusUnauthorized, errorBody("bad_signature", err.Error()))
		return
	}
	var ms []match
	if err := json.Unmarshal(body, &ms); err != nil {
		answer(w, http.StatusBadRequest, errorBody("bad_request", "the body is not a JSON array of {token, type, url, source}"))
		return
	}
	out := make([]Feedback, len(ms))
	for i, m := range ms {
		label, err := h.act(r, m)
		if err != nil {
			h.log.Error("secret scanning: acting on a reported key failed; GitHub will send it again", slog.Any("error", err))
			w.Header().Set("Retry-After", "60")
			answer(w, http.StatusServiceUnavailable, errorBody("unavailable", "the key database failed; send again later"))
			return
		}
		sum := sha256.Sum256([]byte(m.Token))
		out[i] = Feedback{TokenHash: hex.EncodeToString(sum[:]), TokenType: m.Type, Label: label}
	}
	answer(w, http.StatusOK, out)
}

// act checks one token and, for a key of Keygate's, revokes it (per the
// action) and records the leak. Keys of any status are true positives:
// a revoked key that leaks is still a real key.
func (h *Handler) act(r *http.Request, m match) (string, error) {
	if _, err := h.cfg.Formats.Parse(m.Token); err != nil {
		return labelFalse, nil
	}
	rec, err := h.db.KeyByHash(r.Context(), h.cfg.Hasher.Sum(m.Token))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return labelFalse, nil
	case err != nil:
		return "", err
	}
	// GitHub may revoke and report the key it found, in the key's tenant
	// only, and nothing else.
	ctx := admin.WithCaller(r.Context(), admin.Principal{
		Actor:  store.Actor{Type: store.ActorGitHub, Name: "secret-scanning"},
		Tenant: rec.Tenant, Perms: []admin.Permission{admin.PermKeysRevoke},
	}, remoteIP(r), requestID(r))
	revoked := false
	if h.cfg.Action == ActionRevoke {
		_, err := h.svc.Revoke(ctx, rec.ID)
		switch {
		case err == nil:
			revoked = true
		case !errors.Is(err, admin.ErrAlreadyRevoked):
			return "", fmt.Errorf("revoking key %s: %w", rec.ID, err)
		}
	}
	if _, err := h.svc.ReportLeak(ctx, rec.ID, admin.Leak{URL: m.URL, Source: m.Source, Type: m.Type}); err != nil {
		return "", fmt.Errorf("recording the leak of key %s: %w", rec.ID, err)
	}
	h.log.Warn("secret scanning: GitHub found a key in public", slog.Any("key", rec), slog.String("source", m.Source),
		slog.String("url", m.URL), slog.Bool("revoked", revoked), slog.String("action", string(h.cfg.Action)))
	return labelTrue, nil
}

// readBody reads the raw body, which the signature covers, up to maxBody.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("a message holds at most %d bytes", maxBody)
	case err != nil:
		return nil, http.StatusBadRequest, errors.New("the body could not be read")
	}
	return body, 0, nil
}

// requestID is GitHub's id of the delivery, for the audit log, if it is
// a short printable token: the signature does not cover headers.
func requestID(r *http.Request) string {
	id := r.Header.Get("X-GitHub-Request-Id")
	if len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return ""
		}
	}
	return id
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type errorAnswer struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func errorBody(code, msg string) errorAnswer {
	var e errorAnswer
	e.Error.Code, e.Error.Message = code, msg
	return e
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
