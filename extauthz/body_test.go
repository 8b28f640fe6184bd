package extauthz

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestErrorBodies(t *testing.T) {
	maxAI := ErrorFormat{Flat: true, CodeField: "code", MessageField: "message", RequestIDField: "trace_id",
		Overrides: map[string]ErrorText{
			"invalid_api_key":    {Code: "unauthorized", Message: "Invalid or missing API key"},
			"insufficient_scope": {Code: "forbidden", Message: "Insufficient scope. Required:"},
		}}
	mediloop := ErrorFormat{CodeField: "code", MessageField: "message", TypeField: "type",
		Overrides: map[string]ErrorText{"invalid_api_key": {Code: "authentication_error", Message: "Invalid API key provided", Type: "invalid_request_error"}}}
	cases := []struct {
		name   string
		f      ErrorFormat
		code   Code
		detail string
		want   string
	}{
		{"default", DefaultErrorFormat(), CodeInsufficientScope, "patients:read",
			`{"error":{"code":"insufficient_scope","type":"permission_error","message":"Insufficient scope. Required: patients:read","request_id":"req-1"}}`},
		{"max ai 401", maxAI, CodeInvalidAPIKey, "", `{"code":"unauthorized","message":"Invalid or missing API key","trace_id":"req-1"}`},
		{"max ai 403", maxAI, CodeInsufficientScope, "read:patients", `{"code":"forbidden","message":"Insufficient scope. Required: read:patients","trace_id":"req-1"}`},
		{"mediloop 401", mediloop, CodeInvalidAPIKey, "", `{"error":{"code":"authentication_error","type":"invalid_request_error","message":"Invalid API key provided"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := compileBodies(c.f)
			if err != nil {
				t.Fatal(err)
			}
			got := string(b.appendBody(nil, c.code, c.detail, "req-1"))
			if !jsonEqual(t, got, c.want) {
				t.Errorf("body\n got %s\nwant %s", got, c.want)
			}
		})
	}
	if _, err := compileBodies(ErrorFormat{MessageField: "m", Overrides: map[string]ErrorText{"nope": {}}}); err == nil || !strings.Contains(err.Error(), "errors.overrides") {
		t.Errorf("unknown override code: %v", err)
	}
	if _, err := compileBodies(ErrorFormat{}); err == nil {
		t.Error("empty message field accepted")
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

// FuzzErrorBody: whatever the configured names and texts and the request's
// values, the body is valid JSON that carries them.
func FuzzErrorBody(f *testing.F) {
	f.Add(false, "code", "message", "type", "request_id", "unauthorized", "Invalid \"key\"", "req-1", "patients:read")
	f.Add(false, "0", "0", "", "", "x", "y", "r", "d") // a duplicate field, refused
	f.Add(true, "c\x00", "m\xff", "", "trace_id", "\u2028", "</script>", "\xff\xfe", "a\\b")
	f.Fuzz(func(t *testing.T, flat bool, cf, mf, tf, rf, code, msg, rid, detail string) {
		if mf == "" {
			return
		}
		fm := ErrorFormat{Flat: flat, CodeField: cf, MessageField: mf, TypeField: tf, RequestIDField: rf,
			Overrides: map[string]ErrorText{"insufficient_scope": {Code: code, Message: msg}}}
		b, err := compileBodies(fm)
		if err != nil {
			// Two fields of one name are refused by design; anything else
			// these inputs could produce is a bug.
			if !strings.Contains(err.Error(), "is also used by") || !duplicateName(cf, mf, tf, rf) {
				t.Fatal(err)
			}
			return
		}
		body := b.appendBody(nil, CodeInsufficientScope, detail, rid)
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("invalid JSON %q: %v", body, err)
		}
	})
}

func duplicateName(names ...string) bool {
	seen := map[string]bool{}
	for _, n := range names {
		if n != "" && seen[n] {
			return true
		}
		seen[n] = true
	}
	return false
}
