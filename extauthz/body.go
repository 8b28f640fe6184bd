package extauthz

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ErrorFormat is how denial bodies look: DESIGN.md's nested
// {"error":{"code","message","type","request_id"}} by default, or what an
// API's documentation promises (flat, other field names, other codes).
type ErrorFormat struct {
	Flat bool // {"code":…} instead of {"error":{"code":…}}
	// Field names; an empty name leaves the field out.
	CodeField, MessageField, TypeField, RequestIDField string
	// Overrides replaces, per Keygate code name ("invalid_api_key"), the
	// code, message or type shown; empty strings keep the default. For
	// insufficient_scope the message is followed by the missing scope.
	Overrides map[string]ErrorText
}

// ErrorText is what one denial says.
type ErrorText struct {
	Code, Message, Type string
}

// DefaultErrorFormat is DESIGN.md's body.
func DefaultErrorFormat() ErrorFormat {
	return ErrorFormat{CodeField: "code", MessageField: "message", TypeField: "type", RequestIDField: "request_id"}
}

// bodyParts is one code's body, pre-rendered around its two variable
// parts: head ends inside the message string (so the detail follows),
// mid leads to the request id, tail closes.
type bodyParts struct {
	head, mid, tail []byte
	withID          bool
}

type bodies [numCodes]bodyParts

// compileBodies renders every code's fixed parts once. Field names and
// texts are escaped, so the body is valid JSON whatever the config says.
func compileBodies(f ErrorFormat) (*bodies, error) {
	for name := range f.Overrides {
		if codeByName(name) == numCodes {
			return nil, fmt.Errorf("errors.overrides: %q is not a Keygate error code", name)
		}
	}
	if f.MessageField == "" {
		return nil, fmt.Errorf("errors.fields.message: must not be empty")
	}
	// Two fields of one name would make a body with a duplicate key, which
	// JSON parsers read differently.
	fields := []struct{ path, name string }{{"code", f.CodeField}, {"message", f.MessageField}, {"type", f.TypeField}, {"request_id", f.RequestIDField}}
	for i, a := range fields {
		for _, b := range fields[:i] {
			if a.name != "" && a.name == b.name {
				return nil, fmt.Errorf("errors.fields.%s: %q is also used by errors.fields.%s", a.path, a.name, b.path)
			}
		}
	}
	var out bodies
	for c := Code(1); c < numCodes; c++ {
		info := codeTable[c]
		text := ErrorText{Code: info.name, Message: info.message, Type: info.errType}
		if o, ok := f.Overrides[info.name]; ok {
			if o.Code != "" {
				text.Code = o.Code
			}
			if o.Message != "" {
				text.Message = o.Message
				if c == CodeInsufficientScope && text.Message[len(text.Message)-1] != ' ' {
					text.Message += " "
				}
			}
			if o.Type != "" {
				text.Type = o.Type
			}
		}
		var b []byte
		if !f.Flat {
			b = append(b, `{"error":`...)
		}
		b = append(b, '{')
		for _, fv := range [][2]string{{f.CodeField, text.Code}, {f.TypeField, text.Type}} {
			if fv[0] == "" {
				continue
			}
			b = appendJSONString(b, fv[0], "")
			b = append(b, ':')
			b = appendJSONString(b, fv[1], "")
			b = append(b, ',')
		}
		b = appendJSONString(b, f.MessageField, "")
		b = append(b, ":\""...)
		b = appendEscaped(b, text.Message)
		p := bodyParts{head: b, withID: f.RequestIDField != ""}
		if p.withID {
			p.mid = appendJSONString([]byte(`",`), f.RequestIDField, "")
			p.mid = append(p.mid, ":\""...)
		}
		p.tail = []byte(`"}`)
		if !f.Flat {
			p.tail = append(p.tail, '}')
		}
		out[c] = p
	}
	return &out, nil
}

func codeByName(name string) Code {
	for c := Code(0); c < numCodes; c++ {
		if codeTable[c].name == name {
			return c
		}
	}
	return numCodes
}

// appendBody writes the denial body of c.
func (b *bodies) appendBody(buf []byte, c Code, detail, requestID string) []byte {
	p := &b[c]
	buf = append(buf, p.head...)
	buf = appendEscaped(buf, detail)
	if p.withID {
		buf = append(buf, p.mid...)
		buf = appendEscaped(buf, requestID)
	}
	return append(buf, p.tail...)
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

// Validate checks the format as New would, for config loading.
func (f ErrorFormat) Validate() error {
	_, err := compileBodies(f)
	return err
}
