package extauthz

import (
	"encoding/json"
	"time"

	"github.com/keygate/keygate/limits"
)

// introspection is the body of the introspection route: what the calling
// key is and may do here, never the key itself.
type introspection struct {
	KeyID        string     `json:"key_id"`
	Prefix       string     `json:"prefix"`
	Tenant       string     `json:"tenant"`
	Env          string     `json:"env"`
	Organization string     `json:"organization"`
	Scopes       []string   `json:"scopes"`
	Plan         string     `json:"plan"`
	ExpiresAt    *time.Time `json:"expires_at"`
	RateLimit    *rateState `json:"rate_limit,omitempty"`
	RequestID    string     `json:"request_id"`
}

type rateState struct {
	Limit     int           `json:"limit"`
	Remaining int           `json:"remaining"`
	Reset     int64         `json:"reset"`
	Window    string        `json:"window"`
	Windows   []windowState `json:"windows"`
}

type windowState struct {
	Window    string `json:"window"`
	Limit     int    `json:"limit"`
	Remaining int    `json:"remaining"`
	Reset     int64  `json:"reset"`
}

func (s *Server) introspectionBody(d *Decision) []byte {
	k := &d.Key
	v := introspection{KeyID: k.ID, Prefix: k.Prefix, Tenant: k.Tenant, Env: string(k.Env), Organization: d.Org,
		Scopes: d.Scopes, Plan: d.Plan, RequestID: d.RequestID}
	if v.Scopes == nil {
		v.Scopes = []string{}
	}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt.UTC()
		v.ExpiresAt = &t
	}
	if r := &d.Rate; d.HasRate && !r.Unknown {
		v.RateLimit = &rateState{Limit: r.Limit, Remaining: r.Remaining, Reset: limits.CeilSeconds(r.Reset), Window: r.Window.Name()}
		for _, w := range r.Windows {
			v.RateLimit.Windows = append(v.RateLimit.Windows, windowState{Window: w.Window.Name(), Limit: w.Window.Limit,
				Remaining: w.Remaining, Reset: limits.CeilSeconds(w.Reset)})
		}
	}
	b, _ := json.Marshal(v) // only strings, numbers and times: cannot fail
	return b
}

func (s *Server) introspectionHeaders(d *Decision) []header {
	out := []header{{"content-type", "application/json"}, {"cache-control", "no-store"}}
	return s.responseHeaders(d, out)
}
