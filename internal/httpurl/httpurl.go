// Package httpurl checks the absolute http(s) URLs Keygate is configured
// to call or to send people to: webhook endpoints, an OIDC issuer and its
// redirect. Each caller adds its own rules (https only off loopback, no
// fragment) to the ones every such URL shares.
package httpurl

import (
	"errors"
	"fmt"
	"net/url"
)

// Parse returns s as an absolute http or https URL with a host and no
// user or password (they would be stored, and printed wherever the URL
// is), or an error that quotes s.
func Parse(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return nil, errors.New("required")
	case err != nil:
		return nil, fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%q: the scheme must be https (or http)", s)
	case u.Host == "":
		return nil, fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return nil, errors.New("must not hold credentials (a user or password): they would be stored and shown with the URL")
	}
	return u, nil
}
