package main

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The load generator's own cost lands on the same two cores as the server
// under test, so it is kept small and, above all, the same whatever the
// server answers. protobuf-go would encode each CheckRequest (a map, by
// reflection) and decode each response into Go objects — a cost that grows
// with the response and so would be charged to the server with the bigger
// one. In -decode status (the default), each worker encodes its CheckRequest
// once, and of each response the client reads what it checks — the gRPC
// status code, allowed or denied, a denial's HTTP status — stepping over
// every other top-level field by its length. -decode full uses protobuf-go
// both ways instead, as a Go client of Keygate would.

// rawMessage is a message already encoded, sent as it is.
type rawMessage []byte

// answer is what the load generator reads of a CheckResponse.
type answer struct {
	grpcCode   int32 // status.code: 0 allows
	allowed    bool  // ok_response present
	denied     bool  // denied_response present
	httpStatus int32 // denied_response.status.code
}

// clientCodec is gRPC's proto codec except for rawMessage and *answer.
type clientCodec struct{ proto encoding.CodecV2 }

func newClientCodec() (clientCodec, error) {
	c := encoding.GetCodecV2("proto")
	if c == nil {
		return clientCodec{}, errors.New("gRPC's proto codec is not registered")
	}
	return clientCodec{proto: c}, nil
}

func (c clientCodec) Name() string { return "proto" }

func (c clientCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawMessage); ok {
		// SliceBuffer's Free does nothing: the worker's bytes stay its own.
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return c.proto.Marshal(v)
}

func (c clientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	a, ok := v.(*answer)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	*a = answer{}
	return a.read(buf.ReadOnlyData())
}

// encodeRequest encodes m once for every send.
func encodeRequest(m proto.Message) (rawMessage, error) {
	b, err := proto.Marshal(m)
	return rawMessage(b), err
}

// Field numbers of envoy.service.auth.v3's CheckResponse and the messages
// the client looks into.
const (
	respStatus, respDenied, respOK = 1, 2, 3
	respError                      = 5 // error_response, the oneof's third member
	statusCode                     = 1 // google.rpc.Status.code
	deniedStatus, httpStatusCode   = 1, 1
)

// fields calls f for each field of the message in b, with the field's
// number and type and, for length-delimited fields, its bytes, or the
// varint. Other fields are stepped over.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var (
			v []byte
			x uint64
		)
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v, x); err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
	}
	return nil
}

// read reads b's top-level fields and, of the status and a denial, the
// codes.
func (a *answer) read(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num > respOK && num != respError {
			return nil
		}
		if typ != protowire.BytesType {
			return errors.New("not a message")
		}
		switch num {
		case respStatus:
			return fields(v, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
				if num != statusCode {
					return nil
				}
				if typ != protowire.VarintType {
					return errors.New("status code is not a varint")
				}
				a.grpcCode = int32(x)
				return nil
			})
		// denied, ok and error are one oneof: a later member replaces an
		// earlier one, and a denial after another member starts afresh.
		case respOK:
			a.allowed, a.denied, a.httpStatus = true, false, 0
		case respError:
			a.allowed, a.denied, a.httpStatus = false, false, 0
		case respDenied:
			if !a.denied {
				a.allowed, a.denied, a.httpStatus = false, true, 0
			}
			return fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num != deniedStatus || typ != protowire.BytesType {
					return nil
				}
				return fields(v, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
					if num == httpStatusCode && typ == protowire.VarintType {
						a.httpStatus = int32(x)
					}
					return nil
				})
			})
		}
		return nil
	})
}
