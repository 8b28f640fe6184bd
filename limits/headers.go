package limits

import (
	"encoding/base64"
	"strconv"
	"time"
)

// PolicyHeader renders the RateLimit-Policy field of
// draft-ietf-httpapi-ratelimit-headers-10: one list member per window,
// `"1h";q=100;w=3600`; a per-tenant window is named "tenant-1h".
func PolicyHeader(ws []Window) string {
	return string(AppendPolicy(make([]byte, 0, 32*len(ws)), ws, ""))
}

// AppendPolicy appends the RateLimit-Policy field of ws to b, with tenant,
// if set, as the partition key (pk) of each per-tenant window.
func AppendPolicy(b []byte, ws []Window, tenant string) []byte {
	for i, w := range ws {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '"')
		b = w.AppendName(b)
		b = append(b, `";q=`...)
		b = strconv.AppendInt(b, int64(w.Limit), 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, int64(w.Period/time.Second), 10)
		if w.Tenant() && tenant != "" {
			b = appendPartition(b, tenant)
		}
	}
	return b
}

// appendPartition appends a pk parameter: the tenant as a byte sequence.
func appendPartition(b []byte, tenant string) []byte {
	b = append(b, ";pk=:"...)
	b = base64.StdEncoding.AppendEncode(b, []byte(tenant))
	return append(b, ':')
}

// StateHeader renders the RateLimit field: for each window known after the
// request, `"1h";r=99;t=36` (r remaining, t whole seconds until the
// window is full again, rounded up).
func StateHeader(r Result) string {
	return string(AppendState(make([]byte, 0, 24*len(r.Windows)), r, ""))
}

// AppendState appends the RateLimit field of r to b; with tenant set, a
// per-tenant window carries it as its partition key,
// `"tenant-1h";r=999;t=4;pk=:YWNtZQ==:` (the tenant, never a key).
func AppendState(b []byte, r Result, tenant string) []byte {
	for i, s := range r.Windows {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '"')
		b = s.Window.AppendName(b)
		b = append(b, `";r=`...)
		b = strconv.AppendInt(b, int64(max(s.Remaining, 0)), 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, CeilSeconds(s.Reset), 10)
		if s.Window.Tenant() && tenant != "" {
			b = appendPartition(b, tenant)
		}
	}
	return b
}

// CeilSeconds rounds d up to whole seconds, never below 0.
func CeilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
