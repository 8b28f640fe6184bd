package extauthz

import (
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// vtMarshaler is the generated fast path go-control-plane ships for its
// messages when built with -tags vtprotobuf: sizing and encoding by plain
// code instead of by reflection, which is most of the cost of writing a
// CheckResponse with a dozen headers and a metadata map.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
}

// codec is gRPC's proto codec with the vtprotobuf encoder where the
// message has one, and for the Check handler's request the reader of
// wire.go. Other messages are decoded by gRPC's codec: go-control-plane
// generates no vtprotobuf decoder.
type codec struct {
	fallback encoding.CodecV2
}

// CodecOption makes a gRPC server encode its responses with codec. It
// changes nothing on the wire: the bytes are protobuf either way.
func CodecOption() (grpc.ServerOption, error) {
	fallback := encoding.GetCodecV2("proto")
	if fallback == nil {
		return nil, fmt.Errorf("extauthz: gRPC's proto codec is not registered")
	}
	return grpc.ForceServerCodecV2(codec{fallback: fallback}), nil
}

// FastEncoding reports whether this binary was built with the vtprotobuf
// encoder (go build -tags vtprotobuf).
func FastEncoding() bool {
	_, ok := any(&authv3.CheckResponse{}).(vtMarshaler)
	return ok
}

func (c codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMarshaler)
	if !ok {
		return c.fallback.Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVTStrict(buf); err != nil {
			return nil, fmt.Errorf("extauthz: encode %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVTStrict((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("extauthz: encode %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	w, ok := v.(*wireCheck)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return w.decode(buf.ReadOnlyData())
}
