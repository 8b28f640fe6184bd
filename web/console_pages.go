package web

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/keygate/keygate/admin"
)

type grantsData struct {
	Grants     []admin.GrantView
	Tenant     string
	FilterPath string
}

func (c *Console) grants(w http.ResponseWriter, r *http.Request, v view) {
	tenant := strings.TrimSpace(r.URL.Query().Get("tenant"))
	gs, err := c.svc.ListGrants(r.Context(), tenant)
	if err != nil {
		status, msg := outcome(c.log, err)
		c.fail(w, v, status, msg)
		return
	}
	d := grantsData{Tenant: tenant, FilterPath: "/grants"}
	for _, g := range gs {
		d.Grants = append(d.Grants, admin.ViewGrant(g))
	}
	v.Title, v.Data = "Grants", d
	c.pages.render(w, c.log, http.StatusOK, "grants", v)
}

func (c *Console) revokeGrant(w http.ResponseWriter, r *http.Request, v view) {
	g, err := c.svc.RevokeGrant(r.Context(), r.PathValue("tenant"), r.PathValue("org"))
	if err != nil {
		status, msg := outcome(c.log, err)
		c.fail(w, v, status, msg)
		return
	}
	c.log.Info("console: grant revoked", slog.String("tenant", g.Tenant), slog.String("org", g.Org))
	http.Redirect(w, r, "/console/grants", http.StatusSeeOther)
}

type portalData struct {
	Tenant, User, Scopes string
	Link                 *admin.PortalLink
}

func (c *Console) portalForm(w http.ResponseWriter, r *http.Request, v view) {
	v.Title, v.Data = "Open a tenant's portal", portalData{Tenant: r.URL.Query().Get("tenant"), User: v.Who}
	c.pages.render(w, c.log, http.StatusOK, "portal", v)
}

// openPortal opens a portal session for a tenant with every permission,
// so that the operator sees what the tenant's users see; the page links
// to it (the portal is on its own listener).
func (c *Console) openPortal(w http.ResponseWriter, r *http.Request, v view) {
	d := portalData{Tenant: strings.TrimSpace(r.PostFormValue("tenant")), User: strings.TrimSpace(r.PostFormValue("user")),
		Scopes: r.PostFormValue("scopes")}
	perms := []string{}
	for _, p := range admin.PortalPermissions() {
		perms = append(perms, string(p))
	}
	link, err := c.svc.OpenPortalSession(r.Context(), admin.PortalSessionRequest{Tenant: d.Tenant, User: d.User,
		Permissions: perms, Scopes: strings.FieldsFunc(d.Scopes, func(r rune) bool { return r == ',' || r == ' ' })})
	v.Title, v.Data = "Open a tenant's portal", d
	if err != nil {
		status, msg := outcome(c.log, err)
		v.Error = msg
		c.pages.render(w, c.log, status, "portal", v)
		return
	}
	d.Link = &link
	v.Data = d
	c.pages.render(w, c.log, http.StatusCreated, "portal", v)
}
