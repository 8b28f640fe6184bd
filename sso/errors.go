package sso

import (
	"errors"
	"html/template"
	"net/http"
	"path"
)

// Errors of a sign-in. Finish wraps one of them with what happened, in
// words meant for the person signing in; Status maps each to its HTTP
// status and WriteError renders the page.
var (
	// ErrUnavailable: the identity provider cannot be reached (or its
	// discovery document is wrong); the sign-in can be tried again.
	ErrUnavailable = errors.New("the identity provider cannot be reached")
	// ErrCookie: no sign-in cookie, or one Keygate did not make.
	ErrCookie = errors.New("no sign-in was started in this browser, or its cookie is not valid")
	// ErrExpired: the sign-in cookie is older than StateTTL.
	ErrExpired = errors.New("the sign-in took too long and has expired")
	// ErrState: the state the provider sent back is not the one this
	// browser's sign-in sent: a forged or crossed callback.
	ErrState = errors.New("the sign-in's state does not match this browser's")
	// ErrNoCode: the callback carries no authorization code.
	ErrNoCode = errors.New("the identity provider sent no authorization code")
	// ErrDenied: the provider answered the sign-in with an error
	// (access_denied when the user declined).
	ErrDenied = errors.New("the identity provider refused the sign-in")
	// ErrExchange: the provider did not exchange the code for tokens.
	ErrExchange = errors.New("the identity provider did not exchange the code")
	// ErrToken: the ID token is not valid: signature, issuer, audience,
	// expiry or nonce.
	ErrToken = errors.New("the identity provider's ID token is not valid")
	// ErrNoRole: the user is in none of the groups console.oidc.roles maps.
	ErrNoRole = errors.New("you are not in a group that may use the console")
)

// Status is the HTTP status of a sign-in error.
func Status(err error) int {
	switch {
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrExchange):
		return http.StatusBadGateway
	case errors.Is(err, ErrToken):
		return http.StatusUnauthorized
	case errors.Is(err, ErrNoRole), errors.Is(err, ErrDenied):
		return http.StatusForbidden
	case errors.Is(err, ErrCookie), errors.Is(err, ErrExpired), errors.Is(err, ErrState), errors.Is(err, ErrNoCode):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign-in failed · Keygate console</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.4rem}p.why{background:#fff1f0;border-left:4px solid #cf222e;padding:.75rem 1rem;overflow-wrap:anywhere}</style>
</head>
<body><main>
<h1>Single sign-on failed</h1>
<p class="why" id="sso-error">{{.Message}}</p>
{{if .Retry}}<p><a href="{{.Login}}">Try again</a></p>{{end}}
<p><a href="{{.Console}}">Back to the console's sign-in page</a></p>
</main></body></html>
`))

// WriteError answers a failed sign-in with a page that says why, with the
// status Status gives err. Begin and Finish's callers use it; r's path
// (under /console/oidc/) locates the links back.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	status := Status(err)
	base := path.Dir(r.URL.Path) // …/console/oidc
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.WriteHeader(status)
	_ = errorPage.Execute(w, struct {
		Message        string
		Retry          bool
		Login, Console string
	}{
		Message: err.Error(),
		Retry:   status != http.StatusForbidden || errors.Is(err, ErrDenied),
		Login:   base + "/login",
		Console: path.Dir(base) + "/",
	})
}
