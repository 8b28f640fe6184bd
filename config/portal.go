package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

var (
	accentRE = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)
	// frameSourceRE is one frame-ancestors source Keygate accepts: a
	// scheme and host, optionally a leading *. wildcard and a port.
	frameSourceRE = regexp.MustCompile(`^https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)
)

// validatePortal checks the portal's fields, naming each.
func (c *Config) validatePortal() error {
	p := c.Portal
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("portal.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if u, err := url.Parse(p.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		bad("public_url", "%q must be an http or https URL with a host and no path, e.g. https://keys.example.com", p.PublicURL)
	}
	for field, d := range map[string]time.Duration{"session_code_ttl": p.SessionCodeTTL, "session_ttl": p.SessionTTL} {
		if d <= 0 || d > 7*24*time.Hour {
			bad(field, "must be a positive duration of at most 7d, got %v", d)
		}
	}
	if t := strings.TrimSpace(p.Title); t == "" || len(t) > 80 {
		bad("title", "must be 1 to 80 characters, got %q", p.Title)
	}
	if p.LogoURL != "" {
		if u, err := url.Parse(p.LogoURL); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil {
			bad("logo_url", "%q must be an http or https URL", p.LogoURL)
		}
	}
	if !accentRE.MatchString(p.AccentColor) {
		bad("accent_color", "%q must be a #rgb or #rrggbb color", p.AccentColor)
	}
	srcs := strings.Fields(p.FrameAncestors)
	if len(srcs) == 0 {
		bad("frame_ancestors", "must not be empty: 'none' (no embedding), 'self' or origins like https://app.example.com")
	}
	for _, s := range srcs {
		switch {
		case s == "'none'" && len(srcs) > 1:
			bad("frame_ancestors", "'none' cannot be combined with other sources")
		case s == "'none'" || s == "'self'" || frameSourceRE.MatchString(s):
		default:
			bad("frame_ancestors", "%q is not 'none', 'self' or an origin like https://app.example.com", s)
		}
	}
	return errors.Join(errs...)
}
