package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

var _ flag.Value = (*listFlag)(nil)

// cmdCheck sends one CheckRequest the way Envoy builds it and prints the
// answer. Exit status: 0 allowed, 1 denied, 2 usage or connection error.
func cmdCheck(ctx context.Context, args []string, e env) error {
	fs := newFlags("check", e)
	addr := fs.String("addr", "127.0.0.1:9191", "Keygate's gRPC address")
	key := fs.String("key", "", "the API key to send as Authorization: Bearer <key> (omit to send none)")
	org := fs.String("org", "", "value of the X-Organization-Id header (omit to send none)")
	method := fs.String("method", "GET", "HTTP method of the simulated request")
	path := fs.String("path", "/", "HTTP path (and query) of the simulated request")
	host := fs.String("host", "api.example.com", "Host (:authority) of the simulated request")
	requestID := fs.String("request-id", "", "x-request-id to send (Envoy always sets one)")
	raw := fs.Bool("raw-headers", false, "send headers in header_map with raw_value, as Envoy does with encode_raw_headers")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	asJSON := fs.Bool("json", false, "print the CheckResponse as JSON")
	caFile := fs.String("cacert", "", "verify the server with this CA (turns on TLS)")
	certFile := fs.String("cert", "", "client certificate for mTLS")
	keyFile := fs.String("key-file", "", "client certificate's key for mTLS")
	var headers, exts listFlag
	fs.Var(&headers, "header", "extra request header 'name: value' (repeatable)")
	fs.Var(&exts, "ext", "per-route context extension 'key=value', e.g. keygate.scopes=patients:read (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	hdrs := [][2]string{{":method", *method}, {":path", *path}, {":authority", *host}}
	if *key != "" {
		hdrs = append(hdrs, [2]string{"authorization", "Bearer " + *key})
	}
	if *org != "" {
		hdrs = append(hdrs, [2]string{"x-organization-id", *org})
	}
	if *requestID != "" {
		hdrs = append(hdrs, [2]string{"x-request-id", *requestID})
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return usageErr("--header %q: want 'name: value'", h)
		}
		hdrs = append(hdrs, [2]string{strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)})
	}
	ext := map[string]string{}
	for _, x := range exts {
		k, v, ok := strings.Cut(x, "=")
		if !ok {
			return usageErr("--ext %q: want key=value", x)
		}
		ext[k] = v
	}
	req := buildCheckRequest(*method, *path, *host, *requestID, hdrs, ext, *raw)

	creds := insecure.NewCredentials()
	if *caFile != "" {
		tc, err := clientTLS(*caFile, *certFile, *keyFile)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("connecting to %s: %w", *addr, err)}
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("check at %s: %w", *addr, err)}
	}
	if *asJSON {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(b))
	} else {
		printCheck(e.stdout, resp)
	}
	if resp.GetOkResponse() == nil {
		return &exitError{code: 1}
	}
	return nil
}

func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--cacert: no PEM certificate in %s", caFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" || keyFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}

// buildCheckRequest fills the fields Envoy's ext_authz filter fills.
func buildCheckRequest(method, path, host, id string, hdrs [][2]string, ext map[string]string, raw bool) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Id: id, Method: method, Path: path, Host: host, Scheme: "http", Protocol: "HTTP/1.1"}
	if raw {
		h.HeaderMap = &corev3.HeaderMap{}
		for _, kv := range hdrs {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
	} else {
		h.Headers = map[string]string{}
		for _, kv := range hdrs {
			if prev, ok := h.Headers[kv[0]]; ok {
				h.Headers[kv[0]] = prev + "," + kv[1] // Envoy joins repeated headers
			} else {
				h.Headers[kv[0]] = kv[1]
			}
		}
	}
	if q := strings.IndexByte(path, '?'); q >= 0 {
		h.Query = path[q+1:]
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}},
		Request:           &authv3.AttributeContext_Request{Http: h},
		ContextExtensions: ext,
	}}
}

func printCheck(w io.Writer, resp *authv3.CheckResponse) {
	if ok := resp.GetOkResponse(); ok != nil {
		fmt.Fprintln(w, "ALLOW")
		fmt.Fprintln(w, "Headers for the upstream:")
		printOptions(w, ok.GetHeaders())
		fmt.Fprintf(w, "Removed from the request: %s\n", strings.Join(ok.GetHeadersToRemove(), ", "))
		if len(ok.GetResponseHeadersToAdd()) > 0 {
			fmt.Fprintln(w, "Headers for the client:")
			printOptions(w, ok.GetResponseHeadersToAdd())
		}
		return
	}
	d := resp.GetDeniedResponse()
	fmt.Fprintf(w, "DENY %d (%s)\n", d.GetStatus().GetCode(), resp.GetStatus().GetMessage())
	fmt.Fprintln(w, "Headers for the client:")
	printOptions(w, d.GetHeaders())
	fmt.Fprintf(w, "Body:\n  %s\n", d.GetBody())
}

func printOptions(w io.Writer, opts []*corev3.HeaderValueOption) {
	lines := make([]string, 0, len(opts))
	for _, o := range opts {
		lines = append(lines, fmt.Sprintf("  %s: %s", o.GetHeader().GetKey(), o.GetHeader().GetValue()))
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}
