package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/keygate/keygate/internal/duration"
)

const checkLong = `Send one CheckRequest to a running Keygate the way Envoy's ext_authz
filter builds it, and print the answer: what Envoy would forward upstream
on ALLOW, what the client would get on DENY.

Output (without --json) is these blocks, in this order, each always
printed; header lines are sorted by name, and "(none)" stands for an
empty block:

  ALLOW
  Headers for the upstream:       headers Keygate adds to the request
    x-keygate-tenant: acme
  Removed from the request: authorization
  Headers for the client:         rate-limit headers added to the response
    x-ratelimit-limit: 10000

  DENY <status> (<code>)
  Headers for the client:         headers of the denial
    content-type: application/json
  Body:
    {"error":{"code":"…","message":"…","type":"…","request_id":"…"}}

With --json it prints the CheckResponse as protobuf JSON instead.`

func newCheckCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:   "check",
		Short: "send one CheckRequest to a running server, as Envoy would",
		Long:  checkLong,
		Example: `  keygate check --key "$KEY" --path /api/v1/patients --ext keygate.scopes=patients:read
  keygate check --key "$KEY" --org clinic-7 --method POST --path /api/v1/forms --header 'content-type: application/json'
  keygate check --addr keygate:9191 --cacert ca.pem --cert client.pem --key-file client-key.pem --key "$KEY"
  keygate check --key "$KEY" --path /api/v1/patients --json`,
		Args: noArgs,
		Annotations: map[string]string{annExit: `0  ALLOW
1  DENY (any status: 401, 403, 429, …)
2  could not ask (connection refused, TLS, timeout) or usage error`},
	}
	timeout := 5 * time.Second
	var headers, exts []string
	f := c.Flags()
	addr := f.String("addr", "127.0.0.1:9191", "Keygate's gRPC `address`")
	key := f.String("key", "", "the API key to send as Authorization: Bearer <key> (default: none)")
	org := f.String("org", "", "value of the X-Organization-Id header (default: none)")
	method := f.String("method", "GET", "HTTP method of the simulated request")
	path := f.String("path", "/", "HTTP path (and query) of the simulated request")
	host := f.String("host", "api.example.com", "Host (:authority) of the simulated request")
	requestID := f.String("request-id", "", "x-request-id to send (Envoy always sets one; default: none)")
	raw := f.Bool("raw-headers", false, "send headers in header_map with raw_value, as Envoy does with encode_raw_headers")
	f.Var(duration.Value{D: &timeout}, "timeout", "how long to wait for the answer")
	asJSON := f.Bool("json", false, "print the CheckResponse as protobuf JSON")
	caFile := f.String("cacert", "", "verify the server with this CA `file` (turns on TLS)")
	certFile := f.String("cert", "", "client certificate `file` for mTLS")
	keyFile := f.String("key-file", "", "client certificate's key `file` for mTLS")
	f.StringArrayVar(&headers, "header", nil, "extra request header `'name: value'` (repeatable)")
	f.StringArrayVar(&exts, "ext", nil, "per-route context extension `key=value`, e.g. keygate.scopes=patients:read (repeatable)")
	c.RunE = func(c *cobra.Command, _ []string) error {
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
				return valueError("--header %q: want 'name: value'", h)
			}
			hdrs = append(hdrs, [2]string{strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)})
		}
		ext := map[string]string{}
		for _, x := range exts {
			k, v, ok := strings.Cut(x, "=")
			if !ok {
				return valueError("--ext %q: want key=value", x)
			}
			ext[k] = v
		}
		req := buildCheckRequest(*method, *path, *host, *requestID, hdrs, ext, *raw)
		return sendCheck(c.Context(), e, req, *addr, timeout, *asJSON, *caFile, *certFile, *keyFile)
	}
	return c
}

// sendCheck asks the server at addr and prints its answer; a denial is
// exit status 1, not being able to ask 2.
func sendCheck(ctx context.Context, e env, req *authv3.CheckRequest, addr string, timeout time.Duration, asJSON bool, caFile, certFile, keyFile string) error {
	creds := insecure.NewCredentials()
	if caFile != "" {
		tc, err := clientTLS(caFile, certFile, keyFile)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("connecting to %s: %w", addr, err)}
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("check at %s: %w", addr, err)}
	}
	if asJSON {
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

// printCheck prints the blocks checkLong documents, in its order.
func printCheck(w io.Writer, resp *authv3.CheckResponse) {
	if ok := resp.GetOkResponse(); ok != nil {
		fmt.Fprintln(w, "ALLOW")
		fmt.Fprintln(w, "Headers for the upstream:")
		printOptions(w, ok.GetHeaders())
		removed := "(none)"
		if rm := ok.GetHeadersToRemove(); len(rm) > 0 {
			removed = strings.Join(rm, ", ")
		}
		fmt.Fprintf(w, "Removed from the request: %s\n", removed)
		fmt.Fprintln(w, "Headers for the client:")
		printOptions(w, ok.GetResponseHeadersToAdd())
		return
	}
	d := resp.GetDeniedResponse()
	fmt.Fprintf(w, "DENY %d (%s)\n", d.GetStatus().GetCode(), resp.GetStatus().GetMessage())
	fmt.Fprintln(w, "Headers for the client:")
	printOptions(w, d.GetHeaders())
	body := d.GetBody()
	if body == "" {
		body = "(none)"
	}
	fmt.Fprintf(w, "Body:\n  %s\n", body)
}

func printOptions(w io.Writer, opts []*corev3.HeaderValueOption) {
	if len(opts) == 0 {
		fmt.Fprintln(w, "  (none)")
		return
	}
	hs := make([]*corev3.HeaderValue, len(opts))
	for i, o := range opts {
		hs[i] = o.GetHeader()
	}
	// By name, then value: "ratelimit" before "ratelimit-policy".
	slices.SortStableFunc(hs, func(a, b *corev3.HeaderValue) int {
		return cmp.Or(strings.Compare(a.GetKey(), b.GetKey()), strings.Compare(a.GetValue(), b.GetValue()))
	})
	for _, h := range hs {
		fmt.Fprintf(w, "  %s: %s\n", h.GetKey(), h.GetValue())
	}
}
