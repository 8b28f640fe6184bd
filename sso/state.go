package sso

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// CookieName is the cookie that carries a sign-in from Begin to Finish.
const CookieName = "keygate_oidc"

// state is what a sign-in remembers between Begin and Finish: the state
// and nonce sent to the provider, the PKCE verifier, the redirect URL
// (the code exchange must repeat it) and when it stops being valid.
type state struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Redirect string `json:"r"`
	Expires  int64  `json:"e"` // Unix seconds
}

// sealer encrypts states into cookie values with AES-256-GCM, so that the
// browser can neither read the verifier nor change anything: a changed
// byte fails GCM's tag check, which is constant-time.
type sealer struct{ aead cipher.AEAD }

// newSealer derives the key from the client secret when there is one, so
// that every replica that shares the secret opens the others' cookies (a
// login may start on one replica and come back to another); a public
// client has no shared secret, so its key is random per process.
func newSealer(clientSecret string) (*sealer, error) {
	var key []byte
	if clientSecret != "" {
		k, err := hkdf.Key(sha256.New, []byte(clientSecret), nil, "keygate console oidc state cookie", 32)
		if err != nil {
			return nil, fmt.Errorf("deriving the state cookie key: %w", err)
		}
		key = k
	} else {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("reading crypto/rand: %w", err)
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("state cookie cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("state cookie cipher: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns st encrypted, as base64url text.
func (s *sealer) seal(st state) (string, error) {
	plain, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("encoding the sign-in state: %w", err)
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("reading crypto/rand: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(CookieName))), nil
}

// open reverses seal and checks the expiry. Any cookie that seal did not
// make with this key, or that was changed, is ErrCookie.
func (s *sealer) open(value string, now time.Time) (state, error) {
	var st state
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return st, ErrCookie
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(CookieName))
	if err != nil {
		return st, ErrCookie
	}
	if err := json.Unmarshal(plain, &st); err != nil || st.State == "" || st.Verifier == "" || st.Redirect == "" {
		return st, ErrCookie
	}
	if now.Unix() >= st.Expires {
		return st, ErrExpired
	}
	return st, nil
}

// randomText returns 32 random bytes as base64url text: a state or a nonce.
func randomText() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading crypto/rand: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// stateCookie is the cookie that holds value under path: HttpOnly, Lax
// (it must come back with the provider's top-level redirect, which
// Strict would drop), Secure when the redirect URL is https.
func stateCookie(value, path string, secure bool, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	}
}
