package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPortalFields(t *testing.T) {
	good := []string{
		"portal:\n  public_url: https://keys.acme.com\n  frame_ancestors: \"'self' https://app.acme.com https://*.acme.com:8443\"\n",
		"portal:\n  title: Acme API keys\n  logo_url: https://acme.com/logo.svg\n  accent_color: '#0a0'\n",
	}
	for _, file := range good {
		if _, err := Load(writeFile(t, file), envOf(nil)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
	cases := []struct{ name, file, want string }{
		{"public_url scheme", "portal:\n  public_url: ftp://keys\n", "portal.public_url"},
		{"public_url path", "portal:\n  public_url: https://acme.com/keys\n", "portal.public_url"},
		{"public_url none", "portal:\n  public_url: ''\n", "portal.public_url"},
		{"code ttl", "portal:\n  session_code_ttl: 0s\n", "portal.session_code_ttl"},
		{"session ttl", "portal:\n  session_ttl: 30d\n", "portal.session_ttl: must be a positive duration of at most 7d"},
		{"title", "portal:\n  title: ''\n", "portal.title"},
		{"logo", "portal:\n  logo_url: 'javascript:alert(1)'\n", "portal.logo_url"},
		{"accent", "portal:\n  accent_color: red;}body{\n", "portal.accent_color"},
		{"frame none and more", "portal:\n  frame_ancestors: \"'none' https://a.example\"\n", "portal.frame_ancestors: 'none' cannot"},
		{"frame injection", "portal:\n  frame_ancestors: \"https://a.example; script-src *\"\n", "portal.frame_ancestors"},
		{"frame empty", "portal:\n  frame_ancestors: ''\n", "portal.frame_ancestors: must not be empty"},
	}
	for _, c := range cases {
		_, err := Load(writeFile(t, c.file), envOf(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// TestProfilesBrandThePortal: each shipped profile names its portal and
// gives it its color.
func TestProfilesBrandThePortal(t *testing.T) {
	def := Default().Portal
	files, _ := filepath.Glob(filepath.Join("..", "deploy", "profiles", "*.yaml"))
	if len(files) != 5 {
		t.Fatalf("%d profiles, want 5", len(files))
	}
	for _, f := range files {
		cfg, err := Load(f, envOf(nil))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if p := cfg.Portal; p.Title == def.Title || p.AccentColor == def.AccentColor || !strings.HasSuffix(p.Title, "API keys") {
			t.Errorf("%s: portal %q %q, want its own title and color", f, p.Title, p.AccentColor)
		}
	}
}
