//go:build vtprotobuf

package extauthz

import (
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The Makefile builds and tests with -tags vtprotobuf: make sure the tag
// reaches go-control-plane's generated encoder.
func TestFastEncodingWithTag(t *testing.T) {
	if !FastEncoding() {
		t.Fatal("built with -tags vtprotobuf, but CheckResponse has no vtprotobuf encoder")
	}
}

// TestOKWireMergesMetadata: the request id written after an allowed
// response decodes, with protobuf's merge of a repeated message field,
// into one metadata map with the shared fields, for ids of every length
// (varint lengths of one and two bytes), while the shared map is not
// touched.
func TestOKWireMergesMetadata(t *testing.T) {
	shared := &structpb.Struct{Fields: map[string]*structpb.Value{
		"code": structpb.NewStringValue("ok"), "key_id": structpb.NewStringValue("key_1"), "tenant": structpb.NewStringValue("acme"),
	}}
	for _, id := range []string{"", "r", strings.Repeat("x", 127), strings.Repeat("y", 128), strings.Repeat("z", 300)} {
		resp := &authv3.CheckResponse{
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{HeadersToRemove: []string{"authorization"}}},
			DynamicMetadata: shared,
		}
		w := &okWire{resp: resp, requestID: id}
		buf, err := codec{}.Marshal(w)
		if err != nil {
			t.Fatalf("id of %d bytes: %v", len(id), err)
		}
		var got authv3.CheckResponse
		if err := proto.Unmarshal(buf.Materialize(), &got); err != nil {
			t.Fatalf("id of %d bytes: %v", len(id), err)
		}
		md := got.GetDynamicMetadata().GetFields()
		if len(md) != 4 || md["request_id"].GetStringValue() != id || md["key_id"].GetStringValue() != "key_1" ||
			md["code"].GetStringValue() != "ok" || got.GetOkResponse().GetHeadersToRemove()[0] != "authorization" {
			t.Fatalf("id of %d bytes: decoded %v", len(id), &got)
		}
		if _, ok := shared.Fields["request_id"]; ok {
			t.Fatal("the shared metadata was written to")
		}
	}
}
