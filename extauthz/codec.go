package extauthz

import (
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
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

// fastEncoding is FastEncoding(), read once.
var fastEncoding = FastEncoding()

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

// okWire is an allowed CheckResponse whose dynamic metadata is its key's
// shared map, plus the request id, written by the codec as a second
// dynamic_metadata field. Protobuf merges a message field that appears
// twice, map entries included (the encoding guide's "last one wins" for
// scalars, merge for messages), so Envoy reads one Struct holding both,
// while the shared map is never copied or written to.
type okWire struct {
	resp      vtMarshaler // an *authv3.CheckResponse built with -tags vtprotobuf
	requestID string
}

var _ vtMarshaler = (*okWire)(nil)

// Field numbers of the messages okWire's extra bytes spell out.
const (
	fieldCheckResponseMetadata = 4 // CheckResponse.dynamic_metadata
	fieldStructFields          = 1 // Struct.fields (map entries)
	fieldMapKey                = 1
	fieldMapValue              = 2
	fieldValueString           = 3 // Value.string_value
)

// metadataSizes returns the sizes of the nested messages of the request
// id's extra dynamic_metadata field, innermost first.
func (w *okWire) metadataSizes() (value, entry, st, field int) {
	value = protowire.SizeTag(fieldValueString) + protowire.SizeBytes(len(w.requestID))
	entry = protowire.SizeTag(fieldMapKey) + protowire.SizeBytes(len(mdRequestID)) +
		protowire.SizeTag(fieldMapValue) + protowire.SizeBytes(value)
	st = protowire.SizeTag(fieldStructFields) + protowire.SizeBytes(entry)
	field = protowire.SizeTag(fieldCheckResponseMetadata) + protowire.SizeBytes(st)
	return value, entry, st, field
}

// SizeVT is the response's size with the extra field.
func (w *okWire) SizeVT() int {
	_, _, _, field := w.metadataSizes()
	return w.resp.SizeVT() + field
}

// MarshalToSizedBufferVTStrict writes the response, then the extra field,
// into exactly SizeVT bytes.
func (w *okWire) MarshalToSizedBufferVTStrict(buf []byte) (int, error) {
	value, entry, st, field := w.metadataSizes()
	n := len(buf) - field
	if n < 0 {
		return 0, fmt.Errorf("extauthz: buffer of %d bytes is too small", len(buf))
	}
	if _, err := w.resp.MarshalToSizedBufferVTStrict(buf[:n]); err != nil {
		return 0, err
	}
	b := buf[n:n]
	b = protowire.AppendTag(b, fieldCheckResponseMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(st))
	b = protowire.AppendTag(b, fieldStructFields, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(entry))
	b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
	b = protowire.AppendString(b, mdRequestID)
	b = protowire.AppendTag(b, fieldMapValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(value))
	b = protowire.AppendTag(b, fieldValueString, protowire.BytesType)
	b = protowire.AppendString(b, w.requestID)
	if len(b) != field {
		return 0, fmt.Errorf("extauthz: wrote %d metadata bytes, sized %d", len(b), field)
	}
	return len(buf), nil
}
