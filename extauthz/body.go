package extauthz

import (
	"strconv"
	"unicode/utf8"
)

// appendBody writes DESIGN.md's error body:
// {"error":{"code":…,"message":…,"type":…,"request_id":…}}
func appendBody(b []byte, c Code, detail, requestID string) []byte {
	info := &codeTable[c]
	b = append(b, `{"error":{"code":`...)
	b = appendJSONString(b, info.name, "")
	b = append(b, `,"message":`...)
	b = appendJSONString(b, info.message, detail)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, info.errType, "")
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, requestID, "")
	return append(b, "}}"...)
}

// appendJSONString writes a+b as one JSON string. Control characters and
// invalid UTF-8 are escaped or replaced, so the body is valid JSON whatever
// the inputs hold.
func appendJSONString(buf []byte, a, b string) []byte {
	buf = append(buf, '"')
	buf = appendEscaped(buf, a)
	buf = appendEscaped(buf, b)
	return append(buf, '"')
}

const hexDigits = "0123456789abcdef"

func appendEscaped(buf []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, `\u202`...)
			buf = strconv.AppendInt(buf, int64(r-'\u2028'+8), 16)
		default:
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return buf
}
