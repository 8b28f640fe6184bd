package sso

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIdP is an identity provider that misbehaves on request, for the
// checks a real provider never fails: it signs ID tokens with whatever
// claims a test's tweak leaves, and can pretend to be down. It checks
// PKCE as a real one does. The happy paths run against a real provider
// (zitadel's, in op_test.go).
type fakeIdP struct {
	t      *testing.T
	srv    *httptest.Server
	key    *rsa.PrivateKey
	down   atomic.Bool
	mu     sync.Mutex
	codes  map[string]grant
	claims map[string]any              // the user's claims in the ID token
	info   map[string]any              // extra claims the userinfo endpoint adds
	tweak  func(claims map[string]any) // changes the ID token's claims, after the rest
	signer *rsa.PrivateKey             // nil: key; else signs with this one (a forged token)
}

type grant struct{ challenge, nonce, redirect, clientID string }

func newFakeIdP(t *testing.T) *fakeIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIdP{t: t, key: key, codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("GET /keys", f.keys)
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("GET /userinfo", f.userinfo)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) issuer() string { return f.srv.URL }

func (f *fakeIdP) discovery(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, map[string]any{
		"issuer": f.issuer(), "authorization_endpoint": f.issuer() + "/authorize",
		"token_endpoint": f.issuer() + "/token", "jwks_uri": f.issuer() + "/keys",
		"userinfo_endpoint": f.issuer() + "/userinfo", "id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
	})
}

func (f *fakeIdP) keys(w http.ResponseWriter, _ *http.Request) {
	pub := f.key.PublicKey
	writeJSON(w, map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// authorize is what the provider's login would do: it takes the URL Begin
// redirected to and returns the callback URL with a fresh code.
func (f *fakeIdP) authorize(loc string) string {
	f.t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		f.t.Fatal(err)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" {
		f.t.Fatalf("authorize: want the code flow with S256 PKCE, got %s", u.RawQuery)
	}
	code := randomCode()
	f.mu.Lock()
	f.codes[code] = grant{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: q.Get("redirect_uri"), clientID: q.Get("client_id")}
	f.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	return back.String()
}

func (f *fakeIdP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	g, ok := f.codes[r.PostForm.Get("code")]
	delete(f.codes, r.PostForm.Get("code"))
	f.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !ok:
		oauthError(w, "invalid_grant", "unknown or used code")
		return
	case b64(sum[:]) != g.challenge:
		oauthError(w, "invalid_grant", "code_verifier does not match the code_challenge")
		return
	case r.PostForm.Get("redirect_uri") != g.redirect:
		oauthError(w, "invalid_grant", "redirect_uri differs")
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": f.issuer(), "aud": g.clientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nonce": g.nonce}
	for k, v := range f.claims {
		claims[k] = v
	}
	if f.tweak != nil {
		f.tweak(claims)
	}
	writeJSON(w, map[string]any{"access_token": "at-" + randomCode(), "token_type": "Bearer", "expires_in": 300, "id_token": f.sign(claims)})
}

func (f *fakeIdP) userinfo(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"sub": f.claims["sub"]}
	for k, v := range f.info {
		out[k] = v
	}
	writeJSON(w, out)
}

func (f *fakeIdP) sign(claims map[string]any) string {
	key := f.key
	if f.signer != nil {
		key = f.signer
	}
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"})
	payload, _ := json.Marshal(claims)
	input := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		f.t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomCode() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return b64(b[:])
}
