package main

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func hvo(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

func responses(t testing.TB) map[string]struct {
	msg  *authv3.CheckResponse
	want answer
} {
	md, err := structpb.NewStruct(map[string]any{"key_id": "key_1", "tenant": "acme", "env": "live", "org": "acme",
		"nested": map[string]any{"list": []any{"a", 1, true, nil}}})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]struct {
		msg  *authv3.CheckResponse
		want answer
	}{
		"no-op": {
			msg:  &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}},
			want: answer{allowed: true},
		},
		"allowed": {
			msg: &authv3.CheckResponse{
				Status: &rpcstatus.Status{},
				HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
					Headers:              []*corev3.HeaderValueOption{hvo("x-keygate-key-id", "key_1"), hvo("x-keygate-tenant", "acme")},
					HeadersToRemove:      []string{"authorization"},
					ResponseHeadersToAdd: []*corev3.HeaderValueOption{hvo("ratelimit", `"1h";r=99;t=36`)},
				}},
				DynamicMetadata: md,
			},
			want: answer{allowed: true},
		},
		"denied": {
			msg: &authv3.CheckResponse{
				Status: &rpcstatus.Status{Code: 16, Message: "invalid_api_key"},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
					Headers: []*corev3.HeaderValueOption{hvo("www-authenticate", `Bearer realm="keygate"`), hvo("content-type", "application/json")},
					Body:    `{"error":{"code":"invalid_api_key"}}`,
				}},
			},
			want: answer{grpcCode: 16, denied: true, httpStatus: 401},
		},
	}
}

func TestAnswerRead(t *testing.T) {
	for name, c := range responses(t) {
		b, err := proto.Marshal(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		var got answer
		if err := got.read(b); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: read %+v, want %+v", name, got, c.want)
		}
		// A prefix that cuts the status or the response short is an error.
		for n := 1; n < len(b); n++ {
			var a answer
			if err := a.read(b[:n]); err == nil && a == c.want {
				t.Errorf("%s: the first %d of %d bytes read as the whole: %+v", name, n, len(b), a)
			}
		}
	}
}

func TestAnswerReadRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated tag":      {0x80},
		"length past end":    {0x0a, 0x05, 0x08},
		"status code bytes":  {0x0a, 0x03, 0x0a, 0x01, 0x00},
		"ok response varint": {0x18, 0x01},
		"group wire type":    {0x0b},
		"denied truncated":   {0x12, 0x04, 0x0a, 0x02, 0x08},
		"metadata past end":  {0x22, 0x05, 0x0a},
	} {
		var a answer
		if err := a.read(b); err == nil {
			t.Errorf("%s: read % x without an error: %+v", name, b, a)
		}
	}
}

// TestClientCodec: raw requests go out as they are, answers are read by
// the reader, anything else is protobuf-go's.
func TestClientCodec(t *testing.T) {
	c, err := newClientCodec()
	if err != nil {
		t.Fatal(err)
	}
	req := checkRequest("sk_live_x", 1)
	raw, err := encodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var back authv3.CheckRequest
	if err := proto.Unmarshal(out.Materialize(), &back); err != nil || !proto.Equal(&back, req) {
		t.Fatalf("raw request came out as %v (%v)", &back, err)
	}
	resp := responses(t)["denied"]
	b, _ := proto.Marshal(resp.msg)
	var a answer
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &a); err != nil || a != resp.want {
		t.Fatalf("answer %+v (%v), want %+v", a, err, resp.want)
	}
	var full authv3.CheckResponse
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &full); err != nil || !proto.Equal(&full, resp.msg) {
		t.Fatalf("full decode %v (%v)", &full, err)
	}
}

// FuzzAnswerRead: the reader never panics, and where protobuf-go decodes
// the same bytes to one kind of response, the reader agrees on it.
func FuzzAnswerRead(f *testing.F) {
	for _, c := range responses(f) {
		b, _ := proto.Marshal(c.msg)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a answer
		err := a.read(b)
		var m authv3.CheckResponse
		if err != nil || proto.Unmarshal(b, &m) != nil || a.allowed == a.denied {
			return
		}
		if a.allowed != (m.GetOkResponse() != nil) || a.grpcCode != m.GetStatus().GetCode() {
			t.Fatalf("walker %+v, protobuf-go %v", a, &m)
		}
		if a.denied && a.httpStatus != int32(m.GetDeniedResponse().GetStatus().GetCode()) {
			t.Fatalf("walker %+v, protobuf-go %v", a, &m)
		}
	})
}
