package secretscan

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// errUnverifiable: GitHub's keys could not be read, so a signature can be
// neither accepted nor refused now.
var errUnverifiable = errors.New("GitHub's signing keys cannot be read")

// refetchEvery bounds how often a message naming an unknown key
// identifier makes Keygate read GitHub's keys again, so that made-up
// identifiers cannot turn Keygate into a client hammering GitHub.
const refetchEvery = 10 * time.Second

// maxKeysDoc bounds the keys document.
const maxKeysDoc = 1 << 20

// publicKeys are GitHub's secret scanning signing keys by identifier,
// read from the keys URL when a message names one not known yet.
type publicKeys struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	byID    map[string]*ecdsa.PublicKey
	fetched time.Time // the last read, successful or not
	lastErr error     // its failure, if it failed
}

func newPublicKeys(url string, client *http.Client) *publicKeys {
	return &publicKeys{url: url, client: client, now: time.Now, byID: map[string]*ecdsa.PublicKey{}}
}

// verify checks that sig (base64 of an ASN.1 DER ECDSA signature) signs
// the SHA-256 of body under GitHub's key id. An error wrapping
// errUnverifiable means the keys could not be read; any other, that the
// message is not GitHub's.
func (k *publicKeys) verify(ctx context.Context, id, sig string, body []byte) error {
	if id == "" || sig == "" {
		return fmt.Errorf("%s and %s are required", HeaderKeyID, HeaderSignature)
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("%s is not base64", HeaderSignature)
	}
	pub, err := k.key(ctx, id)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub, digest[:], der) {
		return errors.New("the signature does not match the body")
	}
	return nil
}

// key returns the key named id, reading GitHub's keys once more if it is
// unknown and the last read is older than refetchEvery.
func (k *publicKeys) key(ctx context.Context, id string) (*ecdsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if pub, ok := k.byID[id]; ok {
		return pub, nil
	}
	if !k.fetched.IsZero() && k.now().Sub(k.fetched) < refetchEvery {
		if k.lastErr != nil {
			return nil, fmt.Errorf("%w: %v", errUnverifiable, k.lastErr)
		}
		return nil, unknownKey(id)
	}
	byID, err := k.fetch(ctx)
	k.fetched, k.lastErr = k.now(), err
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnverifiable, err)
	}
	k.byID = byID
	if pub, ok := k.byID[id]; ok {
		return pub, nil
	}
	return nil, unknownKey(id)
}

func unknownKey(id string) error {
	if len(id) > 80 {
		id = id[:80] + "…"
	}
	return fmt.Errorf("%s %q is not one of GitHub's secret scanning keys", HeaderKeyID, id)
}

// keysDoc is GitHub's keys document.
type keysDoc struct {
	PublicKeys []struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	} `json:"public_keys"`
}

// fetch reads the keys document: every ECDSA P-256 key in it, by
// identifier (keys of other kinds are not GitHub's secret scanning keys
// and are left out).
func (k *publicKeys) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "Keygate-Secret-Scanning/1")
	resp, err := k.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("reading %s: %w", k.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading %s: HTTP %d", k.url, resp.StatusCode)
	}
	var doc keysDoc
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxKeysDoc)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("reading %s: not GitHub's keys document: %v", k.url, err)
	}
	out := map[string]*ecdsa.PublicKey{}
	for _, pk := range doc.PublicKeys {
		if pub, ok := parseKey(pk.Key); ok && pk.KeyIdentifier != "" {
			out[pk.KeyIdentifier] = pub
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading %s: no ECDSA P-256 key in it", k.url)
	}
	return out, nil
}

func parseKey(s string) (*ecdsa.PublicKey, bool) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, false
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, false
	}
	pub, ok := key.(*ecdsa.PublicKey)
	return pub, ok && pub.Curve == elliptic.P256()
}

// checkKeysURL accepts https, and http to a loopback address only (a
// test's own keys).
func checkKeysURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", s)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() || u.Hostname() == "localhost" {
			return nil
		}
		return fmt.Errorf("%q: GitHub's keys must be read over https (http only from a loopback address)", s)
	}
	return fmt.Errorf("%q: the scheme must be https", s)
}
