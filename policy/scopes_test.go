package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestValidScope(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name  string
		form  ScopeForm
		scope string
		ok    bool
	}{
		{"ra plain", ScopeResourceAction, "patients:read", true},
		{"ra wildcard", ScopeResourceAction, "patients:*", true},
		{"ra punctuation", ScopeResourceAction, "patient_notes.v2-x:read_all", true},
		{"ra digits", ScopeResourceAction, "p2:r3", true},
		{"ra 64 chars", ScopeResourceAction, long + ":" + long, true},
		{"ra 65 chars resource", ScopeResourceAction, long + "a:read", false},
		{"ra 65 chars action", ScopeResourceAction, "patients:" + long + "a", false},
		{"ra resource wildcard", ScopeResourceAction, "*:patients", false},
		{"ra both wildcard", ScopeResourceAction, "*:*", false},
		{"ra partial wildcard", ScopeResourceAction, "patients:re*", false},
		{"ra no colon", ScopeResourceAction, "patients", false},
		{"ra empty", ScopeResourceAction, "", false},
		{"ra colon only", ScopeResourceAction, ":", false},
		{"ra empty action", ScopeResourceAction, "patients:", false},
		{"ra empty resource", ScopeResourceAction, ":read", false},
		{"ra three parts", ScopeResourceAction, "patients:read:x", false},
		{"ra upper case", ScopeResourceAction, "Patients:read", false},
		{"ra space", ScopeResourceAction, "patients :read", false},
		{"ra comma", ScopeResourceAction, "patients:read,x", false},
		{"ra non-ASCII", ScopeResourceAction, "patiénts:read", false},
		{"ra control byte", ScopeResourceAction, "patients:read\n", false},
		{"ar plain", ScopeActionResource, "read:patients", true},
		{"ar wildcard", ScopeActionResource, "*:patients", true},
		{"ar resource wildcard", ScopeActionResource, "read:*", false},
		{"ar ra wildcard rejected", ScopeActionResource, "patients:*", false},
		{"ar both wildcard", ScopeActionResource, "*:*", false},
		{"ar no colon", ScopeActionResource, "read", false},
		{"ar empty action", ScopeActionResource, ":patients", false},
		{"zero form is resource:action", "", "patients:*", true},
		{"zero form rejects action:resource wildcard", "", "*:patients", false},
		{"unknown form", "resource/action", "patients:read", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidScope(tt.form, tt.scope)
			if (err == nil) != tt.ok {
				t.Errorf("ValidScope(%q, %q) = %v, want ok=%v", tt.form, tt.scope, err, tt.ok)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		name    string
		form    ScopeForm
		granted string
		needed  string
		want    bool
	}{
		{"ra equal", ScopeResourceAction, "patients:read", "patients:read", true},
		{"ra wildcard", ScopeResourceAction, "patients:*", "patients:read", true},
		{"ra wildcard covers itself", ScopeResourceAction, "patients:*", "patients:*", true},
		{"ra other action", ScopeResourceAction, "patients:write", "patients:read", false},
		{"ra narrow does not cover wildcard", ScopeResourceAction, "patients:read", "patients:*", false},
		{"ra wildcard other resource", ScopeResourceAction, "forms:*", "patients:read", false},
		{"ra wildcard prefix resource", ScopeResourceAction, "patient:*", "patients:read", false},
		{"ar equal", ScopeActionResource, "read:patients", "read:patients", true},
		{"ar wildcard", ScopeActionResource, "*:patients", "read:patients", true},
		{"ar wildcard other resource", ScopeActionResource, "*:forms", "read:patients", false},
		{"ar narrow does not cover wildcard", ScopeActionResource, "read:patients", "*:patients", false},
		{"ar other action", ScopeActionResource, "write:patients", "read:patients", false},
		{"ar ra-style wildcard means nothing", ScopeActionResource, "patients:*", "patients:read", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{ScopeForm: tt.form})
			if got := p.Covers(tt.granted, tt.needed); got != tt.want {
				t.Errorf("Covers(%q, %q) = %v, want %v", tt.granted, tt.needed, got, tt.want)
			}
		})
	}
}

func TestMissing(t *testing.T) {
	tests := []struct {
		name   string
		form   ScopeForm
		have   []string
		needed []string
		want   string
		miss   bool
	}{
		{"nothing needed", ScopeResourceAction, nil, nil, "", false},
		{"nothing needed, some had", ScopeResourceAction, []string{"a:b"}, []string{}, "", false},
		{"nothing had", ScopeResourceAction, nil, []string{"patients:read"}, "patients:read", true},
		{"exact", ScopeResourceAction, []string{"patients:read"}, []string{"patients:read"}, "", false},
		{"wildcard", ScopeResourceAction, []string{"patients:*"}, []string{"patients:read", "patients:write"}, "", false},
		{"first missing", ScopeResourceAction, []string{"forms:read"}, []string{"patients:read", "forms:read", "x:y"}, "patients:read", true},
		{"second missing", ScopeResourceAction, []string{"patients:*", "forms:read"}, []string{"patients:read", "forms:write"}, "forms:write", true},
		{"all needed", ScopeResourceAction, []string{"patients:read"}, []string{"patients:read", "patients:write"}, "patients:write", true},
		{"ar wildcard", ScopeActionResource, []string{"*:patients"}, []string{"read:patients", "write:patients"}, "", false},
		{"ar missing", ScopeActionResource, []string{"*:patients"}, []string{"read:patients", "read:forms"}, "read:forms", true},
		{"ar narrow lacks wildcard", ScopeActionResource, []string{"read:patients"}, []string{"*:patients"}, "*:patients", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{ScopeForm: tt.form})
			got, miss := p.Missing(tt.have, tt.needed)
			if got != tt.want || miss != tt.miss {
				t.Errorf("Missing(%q, %q) = %q, %v; want %q, %v", tt.have, tt.needed, got, miss, tt.want, tt.miss)
			}
		})
	}
}

func TestEffective(t *testing.T) {
	tests := []struct {
		name  string
		form  ScopeForm
		key   []string
		grant []string
		want  []string
	}{
		{"key wildcard, grant narrow", ScopeResourceAction, []string{"patients:*"}, []string{"patients:read"}, []string{"patients:read"}},
		{"key narrow, grant wildcard", ScopeResourceAction, []string{"patients:read"}, []string{"patients:*"}, []string{"patients:read"}},
		{"grant wildcard filters", ScopeResourceAction, []string{"patients:read", "forms:write"}, []string{"patients:*"}, []string{"patients:read"}},
		{"both wildcard", ScopeResourceAction, []string{"patients:*"}, []string{"patients:*"}, []string{"patients:*"}},
		{"disjoint", ScopeResourceAction, []string{"patients:read"}, []string{"patients:write"}, []string{}},
		{"disjoint wildcards", ScopeResourceAction, []string{"patients:*"}, []string{"forms:*"}, []string{}},
		{"empty key", ScopeResourceAction, nil, []string{"patients:*"}, []string{}},
		{"empty grant", ScopeResourceAction, []string{"patients:*"}, nil, []string{}},
		{"key order kept", ScopeResourceAction, []string{"forms:read", "patients:read"}, []string{"patients:read", "forms:read"}, []string{"forms:read", "patients:read"}},
		{"wildcard key expands to grant's order", ScopeResourceAction, []string{"patients:*"}, []string{"patients:write", "patients:read"}, []string{"patients:write", "patients:read"}},
		{"deduplicated", ScopeResourceAction, []string{"patients:*", "patients:read", "patients:read"}, []string{"patients:read", "patients:*"}, []string{"patients:read", "patients:*"}},
		{"ar key wildcard", ScopeActionResource, []string{"*:patients"}, []string{"read:patients"}, []string{"read:patients"}},
		{"ar grant wildcard", ScopeActionResource, []string{"read:patients", "write:forms"}, []string{"*:patients"}, []string{"read:patients"}},
		{"ar disjoint", ScopeActionResource, []string{"*:patients"}, []string{"read:forms"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{ScopeForm: tt.form})
			got := p.Effective(tt.key, tt.grant)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Effective(%q, %q) = %q, want %q", tt.key, tt.grant, got, tt.want)
			}
			buf := append(make([]string, 0, 8), "keep:me")
			app := p.AppendEffective(buf, tt.key, tt.grant)
			if !reflect.DeepEqual(app, append([]string{"keep:me"}, tt.want...)) {
				t.Errorf("AppendEffective(%q, %q, %q) = %q", buf, tt.key, tt.grant, app)
			}
		})
	}
}

func TestValidOrg(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"uuid", "3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e5f", true},
		{"upper uuid", "3F2B8C1E-7D4A-4E5B-9C6D-0A1B2C3D4E5F", true},
		{"org_123", "org_123", true},
		{"one char", "a", true},
		{"one digit", "7", true},
		{"dots and colons", "tenant.eu:org-1", true},
		{"128 chars", strings.Repeat("a", 128), true},
		{"empty", "", false},
		{"129 chars", strings.Repeat("a", 129), false},
		{"space", "org 123", false},
		{"leading space", " org", false},
		{"trailing space", "org ", false},
		{"comma", "org1,org2", false},
		{"newline", "org\n", false},
		{"nul", "org\x00", false},
		{"tab", "o\trg", false},
		{"del", "org\x7f", false},
		{"non-ASCII", "orgé", false},
		{"non-ASCII leading", "Ørg", false},
		{"invalid utf-8", "org\xff", false},
		{"leading dash", "-org", false},
		{"leading underscore", "_org", false},
		{"leading dot", ".org", false},
		{"leading colon", ":org", false},
		{"slash", "org/1", false},
		{"semicolon", "org;1", false},
		{"quote", `org"1`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidOrg(tt.id); got != tt.ok {
				t.Errorf("ValidOrg(%q) = %v, want %v", tt.id, got, tt.ok)
			}
		})
	}
}
