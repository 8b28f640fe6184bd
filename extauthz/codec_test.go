package extauthz

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestCodecMatchesProto: whichever encoder the build has, what the codec
// writes decodes to the message it was given, for a response big enough to
// take gRPC's pooled-buffer path as well as a small one.
func TestCodecMatchesProto(t *testing.T) {
	opt, err := CodecOption()
	if err != nil || opt == nil {
		t.Fatalf("CodecOption: %v", err)
	}
	c := codec{fallback: encoding.GetCodecV2("proto")}
	md, _ := structpb.NewStruct(map[string]any{"key_id": "key_1", "tenant": "acme", "env": "live", "org": "acme"})
	big := make([]*corev3.HeaderValueOption, 0, 400)
	for i := range cap(big) {
		big = append(big, (&headerOption{}).set(header{"x-h", string(rune('a' + i%26))}))
	}
	for name, m := range map[string]*authv3.CheckResponse{
		"allowed": {Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: big[:6], HeadersToRemove: []string{"authorization"}, ResponseHeadersToAdd: big[6:11]}}, DynamicMetadata: md},
		"large": {Status: &status.Status{Code: 7, Message: "organization_forbidden"}, HttpResponse: &authv3.CheckResponse_OkResponse{
			OkResponse: &authv3.OkHttpResponse{Headers: big}}},
		"empty": {},
	} {
		out, err := c.Marshal(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var back authv3.CheckResponse
		if err := proto.Unmarshal(out.Materialize(), &back); err != nil || !proto.Equal(&back, m) {
			t.Errorf("%s: decoded %v (%v), want %v", name, &back, err, m)
		}
		out.Free()
	}
	// Not a vtprotobuf message: gRPC's codec writes it.
	if out, err := c.Marshal(&status.Status{Code: 3}); err != nil || out.Len() == 0 {
		t.Errorf("fallback: %v, %d bytes", err, out.Len())
	}
	if _, err := c.Marshal(42); err == nil {
		t.Error("Marshal(42): want an error")
	}
}
