package extauthz

import (
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/keygate/keygate/keys"
)

// metaHeader forwards a metadata key's value in header.
type metaHeader struct{ key, header string }

// metadataHeaders sorts the configured metadata headers by key and lists
// those outside reservedPrefix, which a client's request must lose too.
func metadataHeaders(m map[string]string) (all []metaHeader, other []string) {
	for k, h := range m {
		all = append(all, metaHeader{key: k, header: h})
		if !strings.HasPrefix(h, reservedPrefix) {
			other = append(other, h)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	sort.Strings(other)
	return all, other
}

// isMetaOther reports whether name is one of metaOther, comparing bytes
// to strings without a conversion that could allocate.
func (n *headerNames) isMetaOther(name []byte) bool {
	for _, m := range n.metaOther {
		if string(name) == m {
			return true
		}
	}
	return false
}

// fromAllowedNetwork reports whether the client address — as the failure
// limiter counts it, honouring trusted hops — is in one of the key's
// allowed networks. An address that cannot be read is in none.
func (s *Server) fromAllowedNetwork(r *Request, rec *keys.Record) bool {
	addr := s.client(r)
	a, err := netip.ParseAddr(addr)
	if err != nil {
		// An X-Forwarded-For entry may carry a port: "192.0.2.7:4711".
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return false
		}
		a = ap.Addr()
	}
	return rec.AllowsAddr(a)
}

// appendMetadata appends the headers carrying rec's metadata, in key order.
func (s *Server) appendMetadata(rec *keys.Record, out []header) []header {
	if len(rec.Metadata) == 0 {
		return out
	}
	for _, m := range s.meta {
		if v, ok := rec.Metadata[m.key]; ok {
			out = append(out, header{m.header, v})
		}
	}
	return out
}

// unstripMetadata drops from strip the metadata headers the response sets
// for rec: set, they overwrite the client's copy, and removed after (as
// Envoy applies headers_to_remove last) they would be lost.
func (s *Server) unstripMetadata(strip []string, rec *keys.Record) []string {
	out := make([]string, 0, len(strip))
	for _, h := range strip {
		set := slices.ContainsFunc(s.meta, func(m metaHeader) bool {
			_, ok := rec.Metadata[m.key]
			return ok && m.header == h
		})
		if !set {
			out = append(out, h)
		}
	}
	return out
}
