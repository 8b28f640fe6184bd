package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testpki"
)

func TestMutualTLSAndReload(t *testing.T) {
	p := testpki.New(t)
	cert, key := p.Issue("server", 10, false)
	ccert, ckey := p.Issue("client", 20, true)
	r, err := New(Config{CertFile: cert, KeyFile: key, ClientCAFile: p.CAFile(), RequireClientCert: true, CheckInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", r.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(p.CA())
	clientCert, _ := tls.LoadX509KeyPair(ccert, ckey)
	dial := func(withCert bool) (*tls.ConnectionState, error) {
		cfg := &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}}
		if withCert {
			cfg.Certificates = []tls.Certificate{clientCert}
		}
		c, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		// TLS 1.3 reports a rejected client certificate on the first read.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isEOF(err) {
			return nil, err
		}
		st := c.ConnectionState()
		return &st, nil
	}
	st, err := dial(true)
	if err != nil {
		t.Fatalf("mTLS handshake: %v", err)
	}
	if st.PeerCertificates[0].SerialNumber.Int64() != 10 {
		t.Fatalf("serial %v", st.PeerCertificates[0].SerialNumber)
	}
	if _, err := dial(false); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	// Rotate the server certificate on disk: new handshakes see it.
	time.Sleep(10 * time.Millisecond)
	p.Issue("server", 11, false)
	time.Sleep(5 * time.Millisecond)
	st, err = dial(true)
	if err != nil || st.PeerCertificates[0].SerialNumber.Int64() != 11 {
		t.Fatalf("after rotation: %v, serial %v", err, st.PeerCertificates[0].SerialNumber)
	}
	// A broken file keeps the last good certificate.
	os.WriteFile(cert, []byte("garbage"), 0o600)
	time.Sleep(5 * time.Millisecond)
	if st, err := dial(true); err != nil || st.PeerCertificates[0].SerialNumber.Int64() != 11 {
		t.Fatalf("a bad file replaced the certificate: %v", err)
	}
}

func isEOF(err error) bool {
	ne, ok := err.(net.Error)
	return err.Error() == "EOF" || ok && ne.Timeout()
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []Config{{}, {CertFile: "a"}, {CertFile: filepath.Join(dir, "x"), KeyFile: filepath.Join(dir, "y")}, {CertFile: "a", KeyFile: "b", RequireClientCert: true}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
