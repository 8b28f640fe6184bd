package extauthz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keygate/keygate/policy"
)

// A CheckRequest carries everything Envoy knows of a request: every header,
// both peers, TLS details, metadata. Decoding all of it into Go messages
// (a map of headers, a message per peer and address) costs more than the
// whole decision — ~7.5 µs and 80 allocations for a request of nine
// headers, on this project's machine. Keygate reads only what a decision
// uses (Request), straight from the wire, and steps over the rest.
//
// The reading follows protobuf's rules, so that it sees what a full decode
// would: fields may come in any order and a message field more than once
// (merged: the last scalar wins, maps merge key by key, repeated fields
// append), a oneof is replaced by another member, a field with an
// unexpected wire type is unknown and skipped. FuzzWireMatchesProto checks
// it against protobuf-go and fromCheck. Strings Keygate keeps are checked
// for UTF-8 as protobuf-go checks them; strings it skips are not checked,
// so a request protobuf-go would refuse for a bad string elsewhere is read.

// wireCheck is the Check handler's request. With Keygate's codec
// (CodecOption) it is read from the wire into req; with any other codec,
// gRPC decodes the whole message into full through ProtoReflect, and the
// handler maps it as Server.Check does.
type wireCheck struct {
	names *headerNames
	req   Request
	lean  bool // req was read from the wire
	full  authv3.CheckRequest
}

// ProtoReflect makes wireCheck a proto.Message for codecs other than
// Keygate's: they decode into full.
func (w *wireCheck) ProtoReflect() protoreflect.Message { return w.full.ProtoReflect() }

// request returns what the decision reads.
func (w *wireCheck) request() Request {
	if w.lean {
		return w.req
	}
	return w.names.fromCheck(&w.full)
}

// Field numbers, from envoy/service/auth/v3 and envoy/config/core/v3.
const (
	fCheckAttributes = 1 // CheckRequest.attributes: AttributeContext

	fAttrSource     = 1  // AttributeContext.source: Peer
	fAttrRequest    = 4  // AttributeContext.request: Request
	fAttrExtensions = 10 // AttributeContext.context_extensions: map<string, string>

	fPeerAddress = 1 // Peer.address: config.core.v3.Address

	fAddrSocket = 1 // Address.socket_address, a member of oneof address
	fAddrPipe   = 2 // the oneof's other members
	fAddrEnvoy  = 3

	fSocketAddress = 2 // SocketAddress.address: string

	fRequestHTTP = 2 // Request.http: HttpRequest

	fHTTPID        = 1  // string
	fHTTPMethod    = 2  // string
	fHTTPHeaders   = 3  // map<string, string>, repeated values comma-joined
	fHTTPPath      = 4  // string
	fHTTPHeaderMap = 13 // HeaderMap

	fHeaderMapHeaders = 1 // HeaderMap.headers: repeated HeaderValue

	fHeaderKey      = 1 // HeaderValue.key: string
	fHeaderValue    = 2 // string
	fHeaderRawValue = 3 // bytes

	fMapKey, fMapValue = 1, 2 // a map entry's fields
)

var errWire = errors.New("extauthz: malformed CheckRequest")

// span is a string kept from the message: bytes [start, end) of it.
type span struct{ start, end int }

func (s span) len() int { return s.end - s.start }

// wireHeaders is what one of the two header forms says. A name's span
// is meaningful only once has says it was seen.
type wireHeaders struct {
	auth, org, requestID, forwardedFor             span
	hasAuth, hasOrg, hasRequestID, hasForwardedFor bool
	traceParent, traceState                        span // read when names.trace
	hasTraceParent, hasTraceState                  bool
	authCount, orgCount                            int
	strip                                          []string
	entries                                        int
}

// wireReader reads one CheckRequest.
type wireReader struct {
	b     []byte // the whole message; spans index it
	names *headerNames

	id, method, path, source span
	sourceIsSocket           bool
	extScopes, extOrg        span
	hasExtScopes, hasExtOrg  bool
	headers, headerMap       wireHeaders
}

// decode reads b, a whole CheckRequest, into w.req.
func (w *wireCheck) decode(b []byte) error {
	r := wireReader{b: b, names: w.names}
	if err := r.check(0, len(b)); err != nil {
		return fmt.Errorf("%w: %w", errWire, err)
	}
	if err := r.finish(&w.req); err != nil {
		return fmt.Errorf("%w: %w", errWire, err)
	}
	w.lean = true
	return nil
}

// wireField is one field of a message: its number and type and, for a
// length-delimited field, the bounds of its contents in the message.
type wireField struct {
	num        protowire.Number
	typ        protowire.Type
	start, end int
}

// nested reports whether f is field num holding a message or string.
func (f wireField) nested(num protowire.Number) bool {
	return f.num == num && f.typ == protowire.BytesType
}

func (f wireField) span() span { return span{f.start, f.end} }

// fieldIter steps through the fields of one message, b[at:end].
type fieldIter struct {
	b       []byte
	at, end int
	f       wireField
	err     error
}

func (r *wireReader) fields(start, end int) fieldIter {
	return fieldIter{b: r.b, at: start, end: end}
}

// next reads the next field into it.f; false at the end of the message
// or on an error, left in it.err.
func (it *fieldIter) next() bool {
	if it.at >= it.end || it.err != nil {
		return false
	}
	num, typ, n := protowire.ConsumeTag(it.b[it.at:it.end])
	if n < 0 {
		it.err = protowire.ParseError(n)
		return false
	}
	it.at += n
	it.f = wireField{num: num, typ: typ}
	if typ == protowire.BytesType {
		v, n := protowire.ConsumeBytes(it.b[it.at:it.end])
		if n < 0 {
			it.err = fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			return false
		}
		it.f.start = it.at + n - len(v)
		it.f.end = it.f.start + len(v)
		it.at += n
		return true
	}
	if n = protowire.ConsumeFieldValue(num, typ, it.b[it.at:it.end]); n < 0 {
		it.err = fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		return false
	}
	it.at += n
	return true
}

// Each of the following reads one message, b[start:end]. A field with an
// unexpected wire type is unknown, as to protobuf-go, and stepped over.

func (r *wireReader) check(start, end int) error {
	it := r.fields(start, end)
	for it.next() {
		if it.f.nested(fCheckAttributes) {
			if err := r.attributes(it.f.start, it.f.end); err != nil {
				return err
			}
		}
	}
	return it.err
}

func (r *wireReader) attributes(start, end int) error {
	it := r.fields(start, end)
	for it.next() {
		var err error
		switch f := it.f; {
		case f.nested(fAttrSource):
			err = r.peer(f.start, f.end)
		case f.nested(fAttrRequest):
			err = r.request(f.start, f.end)
		case f.nested(fAttrExtensions):
			var k, v span
			if k, v, err = r.pair(f.start, f.end, fMapKey, fMapValue); err != nil {
				break
			}
			switch string(r.b[k.start:k.end]) {
			case policy.ExtScopes:
				r.extScopes, r.hasExtScopes = v, true
			case policy.ExtOrgRequired:
				r.extOrg, r.hasExtOrg = v, true
			}
		}
		if err != nil {
			return err
		}
	}
	return it.err
}

func (r *wireReader) peer(start, end int) error {
	it := r.fields(start, end)
	for it.next() {
		if it.f.nested(fPeerAddress) {
			if err := r.address(it.f.start, it.f.end); err != nil {
				return err
			}
		}
	}
	return it.err
}

func (r *wireReader) address(start, end int) error {
	it := r.fields(start, end)
	for it.next() {
		switch f := it.f; {
		case f.nested(fAddrSocket):
			if !r.sourceIsSocket {
				// The oneof held another member, or nothing: a new message.
				r.source, r.sourceIsSocket = span{}, true
			}
			// SocketAddress: only its address is read.
			sa := r.fields(f.start, f.end)
			for sa.next() {
				if sa.f.nested(fSocketAddress) {
					r.source = sa.f.span()
				}
			}
			if sa.err != nil {
				return sa.err
			}
		case f.nested(fAddrPipe), f.nested(fAddrEnvoy):
			r.source, r.sourceIsSocket = span{}, false
		}
	}
	return it.err
}

func (r *wireReader) request(start, end int) error {
	it := r.fields(start, end)
	for it.next() {
		if it.f.nested(fRequestHTTP) {
			if err := r.http(it.f.start, it.f.end); err != nil {
				return err
			}
		}
	}
	return it.err
}

func (r *wireReader) http(start, end int) error {
	it := r.fields(start, end)
	for it.next() {
		f := it.f
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case fHTTPID:
			r.id = f.span()
		case fHTTPMethod:
			r.method = f.span()
		case fHTTPPath:
			r.path = f.span()
		case fHTTPHeaders:
			k, v, err := r.pair(f.start, f.end, fMapKey, fMapValue)
			if err != nil {
				return err
			}
			r.mapHeader(k, v)
		case fHTTPHeaderMap:
			if err := r.headerList(f.start, f.end); err != nil {
				return err
			}
		}
	}
	return it.err
}

// headerList reads a HeaderMap: repeated HeaderValue {key, value, raw_value}.
func (r *wireReader) headerList(start, end int) error {
	it := r.fields(start, end)
	for it.next() {
		if !it.f.nested(fHeaderMapHeaders) {
			continue
		}
		var key, value, raw span
		hv := r.fields(it.f.start, it.f.end)
		for hv.next() {
			switch f := hv.f; {
			case f.nested(fHeaderKey):
				key = f.span()
			case f.nested(fHeaderValue):
				value = f.span()
			case f.nested(fHeaderRawValue):
				raw = f.span()
			}
		}
		if hv.err != nil {
			return hv.err
		}
		if !utf8.Valid(r.b[key.start:key.end]) || !utf8.Valid(r.b[value.start:value.end]) {
			return errors.New("header_map: a key or value is not UTF-8")
		}
		if value.len() == 0 && raw.len() > 0 {
			value = raw
		}
		r.listHeader(key, value)
	}
	return it.err
}

// pair reads the length-delimited fields a and b of a message, a map
// entry's key and value; either may be absent (empty).
func (r *wireReader) pair(start, end int, a, b protowire.Number) (x, y span, err error) {
	it := r.fields(start, end)
	for it.next() {
		switch f := it.f; {
		case f.nested(a):
			x = f.span()
		case f.nested(b):
			y = f.span()
		}
	}
	return x, y, it.err
}

// mapHeader takes an entry of the headers map, where a later entry of the
// same key replaces an earlier one, as in the decoded map.
func (r *wireReader) mapHeader(k, v span) {
	h := &r.headers
	h.entries++
	kb := r.b[k.start:k.end]
	switch n := r.names; {
	case string(kb) == n.auth:
		h.auth, h.hasAuth = v, true
	case string(kb) == n.org:
		h.org, h.hasOrg = v, true
	case string(kb) == "x-request-id":
		h.requestID, h.hasRequestID = v, true
	case string(kb) == "x-forwarded-for":
		h.forwardedFor, h.hasForwardedFor = v, true
	case n.trace && string(kb) == "traceparent":
		h.traceParent, h.hasTraceParent = v, true
	case n.trace && string(kb) == "tracestate":
		h.traceState, h.hasTraceState = v, true
	case strings.HasPrefix(string(kb), reservedPrefix) && !n.injected[string(kb)],
		len(n.metaOther) > 0 && n.isMetaOther(kb):
		if !slices.Contains(h.strip, string(kb)) {
			h.strip = append(h.strip, string(kb))
		}
	}
}

// listHeader takes an entry of header_map, where every entry counts and
// names are compared in lower case.
func (r *wireReader) listHeader(k, v span) {
	h := &r.headerMap
	h.entries++
	kb := r.b[k.start:k.end]
	if !isASCII(kb) {
		// strings.ToLower may fold non-ASCII to ASCII (the Kelvin sign to
		// k), as fromCheck's does: the rare slow path.
		r.listHeaderNamed(strings.ToLower(string(kb)), v)
		return
	}
	switch n := r.names; {
	case asciiLowerEqual(kb, n.auth):
		h.auth, h.hasAuth = v, true
		h.authCount++
	case asciiLowerEqual(kb, n.org):
		h.org, h.hasOrg = v, true
		h.orgCount++
	case asciiLowerEqual(kb, "x-request-id"):
		h.requestID, h.hasRequestID = v, true
	case asciiLowerEqual(kb, "x-forwarded-for"):
		h.forwardedFor, h.hasForwardedFor = v, true
	case n.trace && asciiLowerEqual(kb, "traceparent"):
		h.traceParent, h.hasTraceParent = v, true
	case n.trace && asciiLowerEqual(kb, "tracestate"):
		h.traceState, h.hasTraceState = v, true
	case len(kb) >= len(reservedPrefix) && asciiLowerEqual(kb[:len(reservedPrefix)], reservedPrefix):
		if lower := asciiLower(kb); !n.injected[lower] {
			h.strip = append(h.strip, lower)
		}
	case len(n.metaOther) > 0:
		for _, m := range n.metaOther {
			if asciiLowerEqual(kb, m) {
				h.strip = append(h.strip, m)
				break
			}
		}
	}
}

func (r *wireReader) listHeaderNamed(k string, v span) {
	h := &r.headerMap
	switch n := r.names; {
	case k == n.auth:
		h.auth, h.hasAuth = v, true
		h.authCount++
	case k == n.org:
		h.org, h.hasOrg = v, true
		h.orgCount++
	case k == "x-request-id":
		h.requestID, h.hasRequestID = v, true
	case k == "x-forwarded-for":
		h.forwardedFor, h.hasForwardedFor = v, true
	case n.trace && k == "traceparent":
		h.traceParent, h.hasTraceParent = v, true
	case n.trace && k == "tracestate":
		h.traceState, h.hasTraceState = v, true
	case strings.HasPrefix(k, reservedPrefix) && !n.injected[k],
		len(n.metaOther) > 0 && slices.Contains(n.metaOther, k):
		h.strip = append(h.strip, k)
	}
}

// finish validates what was kept and copies it into req, out of the
// message, whose buffer gRPC reuses: the strings share one allocation.
func (r *wireReader) finish(req *Request) error {
	// The form fromCheck reads: header_map once it has an entry.
	h := &r.headers
	list := r.headerMap.entries > 0
	if list {
		h = &r.headerMap
	}
	kept := [...]struct {
		s    span
		has  bool
		dst  *string
		utf8 bool // still to be checked: header_map's were as read
	}{
		{r.id, true, &req.RequestID, true},
		{r.method, true, &req.Method, true},
		{r.path, true, &req.Path, true},
		{r.source, true, &req.Source, true},
		{h.auth, h.hasAuth, &req.Authorization, !list},
		{h.org, h.hasOrg, &req.Org, !list},
		{h.requestID, h.hasRequestID, &req.RequestID, !list},
		{h.forwardedFor, h.hasForwardedFor, &req.ForwardedFor, !list},
		{h.traceParent, h.hasTraceParent, &req.TraceParent, !list},
		{h.traceState, h.hasTraceState, &req.TraceState, !list},
	}
	total := 0
	for _, k := range kept {
		if !k.has {
			continue
		}
		if k.utf8 && !utf8.Valid(r.b[k.s.start:k.s.end]) {
			return errors.New("a string field is not UTF-8")
		}
		total += k.s.len()
	}
	if total > 0 {
		var sb strings.Builder
		sb.Grow(total)
		for _, k := range kept {
			if k.has {
				sb.Write(r.b[k.s.start:k.s.end])
			}
		}
		all := sb.String()
		at := 0
		for _, k := range kept {
			if k.has {
				*k.dst = all[at : at+k.s.len()]
				at += k.s.len()
			}
		}
	}
	req.Strip = h.strip
	if list {
		req.AuthCount, req.OrgCount = h.authCount, h.orgCount
	} else {
		// One map entry per name; a comma means the header was sent twice.
		req.AuthCount = joinedCount(h.hasAuth, req.Authorization)
		req.OrgCount = joinedCount(h.hasOrg, req.Org)
	}
	if r.hasExtScopes || r.hasExtOrg {
		ext, err := r.names.exts.get(r.b, r.extScopes, r.hasExtScopes, r.extOrg, r.hasExtOrg)
		if err != nil {
			return err
		}
		req.Extensions = ext
	}
	return nil
}

func joinedCount(has bool, v string) int {
	switch {
	case !has:
		return 0
	case strings.IndexByte(v, ',') >= 0:
		return 2
	}
	return 1
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLowerEqual reports whether b, ASCII, lower-cased is name.
func asciiLowerEqual(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

func asciiLower(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// extCache holds the context extensions maps requests carry, shared
// read-only: they come from the proxy's route configuration, so a few
// distinct ones recur on every request, and Policy.Match only reads them.
type extCache struct {
	mu sync.RWMutex
	m  map[string]map[string]string
}

// maxExts bounds the maps kept; past it, each request gets its own.
const maxExts = 1024

// get returns the map of Keygate's two extensions with the values at the
// spans of b, where has says each was sent.
func (c *extCache) get(b []byte, scopes span, hasScopes bool, org span, hasOrg bool) (map[string]string, error) {
	sv, ov := b[scopes.start:scopes.end], b[org.start:org.end]
	if !utf8.Valid(sv) || !utf8.Valid(ov) {
		return nil, errors.New("context_extensions: a value is not UTF-8")
	}
	// The cache key: a flag byte per extension, then both values; it is
	// built on the stack when short, as route configurations' are.
	var kb [256]byte
	key := append(kb[:0], flag(hasScopes), flag(hasOrg))
	key = append(append(append(key, sv...), 0), ov...)
	c.mu.RLock()
	m, ok := c.m[string(key)]
	c.mu.RUnlock()
	if ok {
		return m, nil
	}
	m = make(map[string]string, 2)
	if hasScopes {
		m[policy.ExtScopes] = string(sv)
	}
	if hasOrg {
		m[policy.ExtOrgRequired] = string(ov)
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]map[string]string)
	}
	if len(c.m) < maxExts {
		c.m[string(key)] = m
	}
	c.mu.Unlock()
	return m, nil
}

func flag(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// serviceDesc is envoy.service.auth.v3.Authorization with a Check handler
// that takes a wireCheck instead of a decoded CheckRequest.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: authv3.Authorization_ServiceDesc.HandlerType,
	Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: checkHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    authv3.Authorization_ServiceDesc.Metadata,
}

func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*grpcServer).s
	in := &wireCheck{names: &s.names}
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return s.checkWire(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.checkWire(ctx, req.(*wireCheck))
	})
}

// checkWire decides a request. One that Keygate's codec read (lean) is
// answered for that codec, which knows okWire; with any other codec the
// answer is a plain CheckResponse.
func (s *Server) checkWire(ctx context.Context, in *wireCheck) (any, error) {
	start := time.Now()
	r := in.request()
	return s.check(ctx, &r, start, in.lean), nil
}
