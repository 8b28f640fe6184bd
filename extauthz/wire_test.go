package extauthz

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/policy"
)

var wireNames = &headerNames{auth: "authorization", org: "x-organization-id", injected: map[string]bool{"x-keygate-tenant": true}, exts: &extCache{}}

// tracedNames are wireNames with tracing on: traceparent and tracestate
// are read too.
var tracedNames = &headerNames{auth: "authorization", org: "x-organization-id", injected: map[string]bool{"x-keygate-tenant": true}, exts: &extCache{},
	trace: true}

// comparable drops what the two readers may differ in without a
// difference to a decision: the order of stripped headers (a map's order
// in fromCheck) and context extensions other than Keygate's.
func comparable(r Request) Request {
	if len(r.Strip) == 0 {
		r.Strip = nil
	} else {
		r.Strip = slices.Sorted(slices.Values(r.Strip))
	}
	ext := map[string]string{}
	for _, k := range []string{policy.ExtScopes, policy.ExtOrgRequired} {
		if v, ok := r.Extensions[k]; ok {
			ext[k] = v
		}
	}
	r.Extensions = nil
	if len(ext) > 0 {
		r.Extensions = ext
	}
	return r
}

// readBothWith reads b with the wire reader and with protobuf-go + fromCheck,
// looking for the headers names names.
func readBothWith(t *testing.T, names *headerNames, b []byte) (lean, ref Request, leanErr, refErr error) {
	t.Helper()
	var m authv3.CheckRequest
	if refErr = proto.Unmarshal(b, &m); refErr == nil {
		ref = comparable(names.fromCheck(&m))
	}
	w := wireCheck{names: names}
	if leanErr = w.decode(b); leanErr == nil {
		if !w.lean {
			t.Fatal("decode succeeded without setting lean")
		}
		lean = comparable(w.request())
	}
	return lean, ref, leanErr, refErr
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func httpReq(h *authv3.AttributeContext_HttpRequest, ext map[string]string, src *corev3.Address) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: src, Principal: "spiffe://x"},
		Destination:       &authv3.AttributeContext_Peer{Address: sockAddr("10.0.0.2")},
		Request:           &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: h},
		ContextExtensions: ext,
	}}
}

func sockAddr(ip string) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 443}}}}
}

func hv(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, Value: v} }

// wireCases are requests as Envoy sends them, and stranger ones.
func wireCases(t testing.TB) map[string][]byte {
	pipe := &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock"}}}
	headers := map[string]string{":method": "GET", ":path": "/api/v1/patients/p1", "authorization": "Bearer sk_live_abc",
		"x-organization-id": "org-1", "x-request-id": "req-9", "x-forwarded-for": "203.0.113.7, 10.0.0.1",
		"x-keygate-tenant": "spoofed", "x-keygate-admin": "1", "user-agent": "curl",
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "acme=1"}
	full := mustMarshal(t, httpReq(&authv3.AttributeContext_HttpRequest{Id: "envoy-id", Method: "GET", Path: "/api/v1/patients/p1?x=1",
		Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2", Size: 12, Body: "{}", Headers: headers},
		map[string]string{policy.ExtScopes: "patients:read", policy.ExtOrgRequired: "true", "other": "x"}, sockAddr("203.0.113.7")))
	headerMap := mustMarshal(t, httpReq(&authv3.AttributeContext_HttpRequest{Id: "envoy-id", Method: "POST", Path: "/p",
		Headers: map[string]string{"authorization": "ignored: header_map wins"},
		HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			hv("Authorization", "Bearer one"), {Key: "authorization", RawValue: []byte("Bearer two")},
			hv("X-Organization-Id", "org-2"), {Key: "x-request-id", RawValue: []byte("raw-id")},
			hv("X-KEYGATE-Plan", "enterprise"), hv("x-keygate-plan", "again"), hv("X-Keygate-Tenant", "spoofed"),
			hv("x-\u212Aeygate-kelvin", "ToLower folds the Kelvin sign to k"), hv("", ""), {Key: "x-raw", RawValue: []byte{0xff, 0xfe}},
			hv("TraceParent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), {Key: "tracestate", RawValue: []byte("a=1")},
			hv("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"), // repeated: the last wins
			hv("trace\u212Aparent", "not the traceparent header"),
		}}}, nil, pipe))
	return map[string][]byte{
		"empty":          {},
		"full":           full,
		"header_map":     headerMap,
		"joined":         mustMarshal(t, httpReq(&authv3.AttributeContext_HttpRequest{Headers: map[string]string{"authorization": "Bearer a,Bearer b", "x-organization-id": "a,b"}}, nil, nil)),
		"no attributes":  mustMarshal(t, &authv3.CheckRequest{}),
		"empty map":      mustMarshal(t, httpReq(&authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{}, Headers: map[string]string{"authorization": "Bearer m"}}, nil, nil)),
		"merged":         append(slices.Clone(full), headerMap...), // two messages in a row merge
		"merged reverse": append(slices.Clone(headerMap), full...), // pipe then socket address
		"twice":          append(slices.Clone(full), full...),      // map entries repeat: last wins
		"unknown fields": protowire.AppendVarint(protowire.AppendTag(slices.Clone(full), 99, protowire.VarintType), 7),
		// attributes with a wrong wire type: an unknown field, skipped.
		"wrong wire type": protowire.AppendVarint(protowire.AppendTag(slices.Clone(full), 1, protowire.VarintType), 1),
		"truncated":       full[:len(full)-3],
		// protobuf-go writes no invalid UTF-8: these are written by hand.
		"bad utf8 path": inHTTP(field(fHTTPPath, []byte("/\xff"))),
		"bad utf8 skipped": inHTTP(append(field(fHTTPPath, []byte("/")),
			field(fHTTPHeaders, append(field(fMapKey, []byte("user-agent")), field(fMapValue, []byte("\xff"))...))...)),
	}
}

func field(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

// inHTTP wraps the fields of an HttpRequest in a CheckRequest.
func inHTTP(b []byte) []byte {
	return field(fCheckAttributes, field(fAttrRequest, field(fRequestHTTP, b)))
}

// TestWireMatchesProto: for each case, the wire reader reads what
// protobuf-go and fromCheck read, or both refuse it — except that a bad
// string the reader skips is not its concern.
func TestWireMatchesProto(t *testing.T) {
	for name, b := range wireCases(t) {
		for _, names := range []*headerNames{wireNames, tracedNames} {
			t.Run(fmt.Sprintf("%s/trace=%v", name, names.trace), func(t *testing.T) {
				lean, ref, leanErr, refErr := readBothWith(t, names, b)
				switch {
				case refErr == nil && leanErr != nil:
					t.Fatalf("wire reader refused what protobuf-go read: %v", leanErr)
				case leanErr == nil && refErr == nil && !reflect.DeepEqual(lean, ref):
					t.Fatalf("wire reader read\n%+v\nprotobuf-go and fromCheck\n%+v", lean, ref)
				}
			})
		}
	}
}

// TestWireReads pins what the reader makes of the cases, beyond agreeing
// with protobuf-go.
func TestWireReads(t *testing.T) {
	cs := wireCases(t)
	read := func(name string) (Request, error) {
		w := wireCheck{names: wireNames}
		err := w.decode(cs[name])
		return w.req, err
	}
	r, err := read("full")
	if err != nil {
		t.Fatal(err)
	}
	want := Request{Method: "GET", Path: "/api/v1/patients/p1?x=1", Authorization: "Bearer sk_live_abc", AuthCount: 1,
		Org: "org-1", OrgCount: 1, RequestID: "req-9", Source: "203.0.113.7", ForwardedFor: "203.0.113.7, 10.0.0.1",
		Extensions: map[string]string{policy.ExtScopes: "patients:read", policy.ExtOrgRequired: "true"},
		Strip:      []string{"x-keygate-admin"}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("full:\n got %+v\nwant %+v", r, want)
	}
	r, err = read("header_map")
	if err != nil {
		t.Fatal(err)
	}
	want = Request{Method: "POST", Path: "/p", Authorization: "Bearer two", AuthCount: 2, Org: "org-2", OrgCount: 1,
		RequestID: "raw-id", Strip: []string{"x-keygate-plan", "x-keygate-plan", "x-keygate-kelvin"}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("header_map:\n got %+v\nwant %+v", r, want)
	}
	if r, _ := read("joined"); r.AuthCount != 2 || r.OrgCount != 2 {
		t.Errorf("joined: counts %d, %d; want 2, 2", r.AuthCount, r.OrgCount)
	}
	if r, _ := read("merged reverse"); r.Source != "203.0.113.7" {
		t.Errorf("a socket address after a pipe: source %q", r.Source)
	}
	if r, _ := read("merged"); r.Source != "" {
		t.Errorf("a pipe after a socket address: source %q, want none", r.Source)
	}
	for _, name := range []string{"truncated", "bad utf8 path"} {
		if _, err := read(name); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := read("bad utf8 skipped"); err != nil {
		t.Errorf("a bad string in a header Keygate does not read: %v", err)
	}
}

// FuzzWireMatchesProto: on any bytes, the wire reader agrees with
// protobuf-go and fromCheck, or protobuf-go refuses them too.
func FuzzWireMatchesProto(f *testing.F) {
	for _, b := range wireCases(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, names := range []*headerNames{wireNames, tracedNames} {
			lean, ref, leanErr, refErr := readBothWith(t, names, b)
			if leanErr != nil {
				if refErr == nil {
					t.Fatalf("trace=%v: wire reader refused what protobuf-go read: %v", names.trace, leanErr)
				}
				continue
			}
			if refErr == nil && !reflect.DeepEqual(lean, ref) {
				t.Fatalf("trace=%v: wire reader read\n%+v\nprotobuf-go and fromCheck\n%+v", names.trace, lean, ref)
			}
		}
	})
}
