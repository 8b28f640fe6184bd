// Package certs serves TLS certificates from files and reloads them when
// the files change, so a rotated certificate (cert-manager, Vault) takes
// effect without a restart.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Config names the files. ClientCAFile turns on client certificates (mTLS).
type Config struct {
	CertFile, KeyFile string
	ClientCAFile      string
	// RequireClientCert rejects clients without a certificate signed by
	// ClientCAFile; otherwise one is verified if sent.
	RequireClientCert bool
	// CheckInterval bounds how often the files are stat'ed (default 5s).
	CheckInterval time.Duration
}

// Reloader holds the current certificate and client CA pool.
type Reloader struct {
	cfg Config

	mu        sync.Mutex
	checked   time.Time
	stamp     string // modification times and sizes of the files
	cert      *tls.Certificate
	clientCAs *x509.CertPool
}

// New loads the files once; an unreadable or mismatched pair is an error.
func New(cfg Config) (*Reloader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are both required")
	}
	if cfg.RequireClientCert && cfg.ClientCAFile == "" {
		return nil, errors.New("tls.require_client_cert: needs tls.client_ca_file")
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 5 * time.Second
	}
	r := &Reloader{cfg: cfg}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reloader) files() []string {
	fs := []string{r.cfg.CertFile, r.cfg.KeyFile}
	if r.cfg.ClientCAFile != "" {
		fs = append(fs, r.cfg.ClientCAFile)
	}
	return fs
}

func (r *Reloader) currentStamp() (string, error) {
	s := ""
	for _, f := range r.files() {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		s += fmt.Sprintf("%s:%d:%d;", f, fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}

// load reads the files; r.mu must be held or r not yet shared.
func (r *Reloader) load() error {
	stamp, err := r.currentStamp()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: cert_file/key_file: %w", err)
	}
	var pool *x509.CertPool
	if r.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(r.cfg.ClientCAFile)
		if err != nil {
			return fmt.Errorf("tls: client_ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tls: client_ca_file: no PEM certificate in %s", r.cfg.ClientCAFile)
		}
	}
	r.cert, r.clientCAs, r.stamp = &cert, pool, stamp
	return nil
}

// refresh reloads when the files changed, at most once per interval. A
// failed reload (a half-written file) keeps the previous certificate.
func (r *Reloader) refresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < r.cfg.CheckInterval {
		return
	}
	r.checked = time.Now()
	if stamp, err := r.currentStamp(); err == nil && stamp != r.stamp {
		_ = r.load()
	}
}

// TLSConfig is a server config whose every handshake sees the current files.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r.refresh()
			r.mu.Lock()
			defer r.mu.Unlock()
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*r.cert}, NextProtos: []string{"h2"}}
			if r.clientCAs != nil {
				c.ClientCAs = r.clientCAs
				c.ClientAuth = tls.VerifyClientCertIfGiven
				if r.cfg.RequireClientCert {
					c.ClientAuth = tls.RequireAndVerifyClientCert
				}
			}
			return c, nil
		},
	}
}
