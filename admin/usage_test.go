package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

var usageDay = time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)

// seedUsage creates a key of acme and one of beta and adds usage to both.
func seedUsage(t *testing.T, svc *Service) (acme, beta string) {
	t.Helper()
	ctx := context.Background()
	a, err := svc.Create(ctx, CreateRequest{Tenant: "acme", Scopes: []string{"patients:read"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := svc.Create(ctx, CreateRequest{Tenant: "beta", Scopes: []string{"patients:read"}})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := svc.Create(ctx, CreateRequest{Tenant: "acme", Scopes: []string{"patients:read"}})
	if err != nil {
		t.Fatal(err)
	}
	h := func(n int) time.Time { return usageDay.Add(time.Duration(n) * time.Hour) }
	if err := svc.db.AddUsage(ctx, []store.UsageCount{
		{KeyID: a.Record.ID, Tenant: "acme", Start: h(1), Allowed: 5, RateLimited: 1},
		{KeyID: a.Record.ID, Tenant: "acme", Start: h(3), Denied: 2},
		{KeyID: a.Record.ID, Tenant: "acme", Start: h(25), Allowed: 7},
		{KeyID: a2.Record.ID, Tenant: "acme", Start: h(1), Allowed: 10},
		{KeyID: b.Record.ID, Tenant: "beta", Start: h(1), Allowed: 1000},
	}); err != nil {
		t.Fatal(err)
	}
	return a.Record.ID, b.Record.ID
}

// buckets renders a view's buckets as "hour:a/r/d", hours since usageDay.
func buckets(v UsageView) string {
	var s []string
	for _, b := range v.Buckets {
		s = append(s, fmt.Sprintf("%d:%d/%d/%d", int(b.Start.Sub(usageDay)/time.Hour), b.Allowed, b.RateLimited, b.Denied))
	}
	return strings.Join(s, " ")
}

func TestUsageViews(t *testing.T) {
	svc := newService(t, nil)
	acme, beta := seedUsage(t, svc)
	ctx := context.Background()
	at := func(h int, m int) time.Time {
		return usageDay.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
	}
	tests := []struct {
		name string
		run  func() (UsageView, error)
		want string
	}{
		{"key hours, zeros filled in", func() (UsageView, error) {
			return svc.KeyUsage(ctx, acme, UsageQuery{Since: at(0, 30), Until: at(4, 0)})
		}, "0:0/0/0 1:5/1/0 2:0/0/0 3:0/0/2"},
		{"until within an hour includes it", func() (UsageView, error) {
			return svc.KeyUsage(ctx, acme, UsageQuery{Since: at(1, 0), Until: at(3, 1), Granularity: "hour"})
		}, "1:5/1/0 2:0/0/0 3:0/0/2"},
		{"key days", func() (UsageView, error) {
			return svc.KeyUsage(ctx, acme, UsageQuery{Since: at(0, 0), Until: at(48, 0), Granularity: "day"})
		}, "0:5/1/2 24:7/0/0"},
		{"tenant summed over its keys", func() (UsageView, error) {
			return svc.TenantUsage(ctx, "acme", UsageQuery{Since: at(1, 0), Until: at(2, 0)})
		}, "1:15/1/0"},
		{"tenant without keys: zeros", func() (UsageView, error) {
			return svc.TenantUsage(ctx, "nobody", UsageQuery{Since: at(1, 0), Until: at(3, 0)})
		}, "1:0/0/0 2:0/0/0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.run()
			if err != nil {
				t.Fatal(err)
			}
			if got := buckets(v); got != tc.want {
				t.Errorf("buckets %s, want %s", got, tc.want)
			}
		})
	}
	v, err := svc.KeyUsage(ctx, acme, UsageQuery{})
	if err != nil || v.Granularity != "hour" || len(v.Buckets) != 7*24+1 && len(v.Buckets) != 7*24 || v.KeyID != acme || v.Tenant != "" {
		t.Errorf("the default query: %s, %d buckets, key %q tenant %q (%v); want 7 days of hours", v.Granularity, len(v.Buckets), v.KeyID, v.Tenant, err)
	}

	bad := []struct {
		name  string
		run   func() error
		is    error
		field string
	}{
		{"unknown key", func() error { _, err := svc.KeyUsage(ctx, "key_nope", UsageQuery{}); return err }, store.ErrNotFound, "key_nope"},
		{"granularity", func() error { _, err := svc.KeyUsage(ctx, acme, UsageQuery{Granularity: "week"}); return err }, ErrInvalid, "granularity:"},
		{"since after until", func() error {
			_, err := svc.KeyUsage(ctx, acme, UsageQuery{Since: at(5, 0), Until: at(1, 0)})
			return err
		}, ErrInvalid, "since:"},
		{"over a year", func() error {
			_, err := svc.TenantUsage(ctx, "acme", UsageQuery{Since: at(0, 0).AddDate(-2, 0, 0), Until: at(0, 0)})
			return err
		}, ErrInvalid, "since:"},
		{"bad tenant", func() error { _, err := svc.TenantUsage(ctx, "no such/tenant", UsageQuery{}); return err }, ErrInvalid, "tenant:"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("err %v, want %v naming %q", err, tc.is, tc.field)
			}
		})
	}

	// A portal session sees its tenant's usage only, and only with usage:read.
	p := Principal{Actor: store.Actor{Type: store.ActorPortal, Name: "jane@acme.com"}, Tenant: "acme", Perms: []Permission{PermUsageRead}}
	pctx := WithCaller(ctx, p, "", "")
	if v, err := svc.KeyUsage(pctx, acme, UsageQuery{Since: at(1, 0), Until: at(2, 0)}); err != nil || buckets(v) != "1:5/1/0" {
		t.Errorf("portal, own key: %s %v", buckets(v), err)
	}
	if _, err := svc.KeyUsage(pctx, beta, UsageQuery{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("portal, another tenant's key: %v, want not found", err)
	}
	if _, err := svc.TenantUsage(pctx, "beta", UsageQuery{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("portal, another tenant: %v, want not found", err)
	}
	p.Perms = nil
	if _, err := svc.TenantUsage(WithCaller(ctx, p, "", ""), "acme", UsageQuery{}); !errors.Is(err, ErrForbidden) {
		t.Errorf("portal without usage:read: %v, want forbidden", err)
	}
}

// TestUsageAPI: the routes' JSON, their parameters' errors naming the
// parameter, and 404 for an unknown key.
func TestUsageAPI(t *testing.T) {
	a := newAPI(t)
	acme, _ := seedUsage(t, a.svc)
	q := "?since=2026-03-04T01:00:00Z&until=2026-03-04T03:00:00Z"

	req := httptest.NewRequest("GET", "/admin/v1/keys/"+acme+"/usage"+q, nil)
	req.Header.Set("Authorization", "Bearer "+viewerToken)
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	want := `{"key_id":"` + acme + `","granularity":"hour","buckets":[` +
		`{"start":"2026-03-04T01:00:00Z","allowed":5,"rate_limited":1,"denied":0},` +
		`{"start":"2026-03-04T02:00:00Z","allowed":0,"rate_limited":0,"denied":0}]}`
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("key usage as viewer: %d\n%s\nwant\n%s", rec.Code, rec.Body.String(), want)
	}

	status, _, body := a.do("GET", "/admin/v1/tenants/acme/usage"+q+"&granularity=day", "")
	var v UsageView
	b, _ := json.Marshal(body)
	json.Unmarshal(b, &v)
	if status != http.StatusOK || v.Tenant != "acme" || v.KeyID != "" || v.Granularity != "day" || buckets(v) != "0:15/1/0" {
		t.Errorf("tenant usage by day: %d %v", status, body)
	}

	cases := []struct {
		name, path string
		status     int
		code, msg  string
	}{
		{"bad since", "/admin/v1/keys/" + acme + "/usage?since=yesterday", 400, "invalid_request", "since:"},
		{"bad until", "/admin/v1/keys/" + acme + "/usage?until=2026-13-01", 400, "invalid_request", "until:"},
		{"negative since", "/admin/v1/tenants/acme/usage?since=-7d", 400, "invalid_request", "since:"},
		{"bad granularity", "/admin/v1/keys/" + acme + "/usage?granularity=minute", 400, "invalid_request", `granularity: "minute" is not hour or day`},
		{"since after until", "/admin/v1/keys/" + acme + "/usage?since=1d&until=7d", 400, "invalid_request", "since:"},
		{"unknown key", "/admin/v1/keys/key_nope/usage", 404, "not_found", "key key_nope not found"},
		{"bad tenant", "/admin/v1/tenants/%20x/usage", 400, "invalid_request", "tenant:"},
		{"post", "/admin/v1/keys/" + acme + "/usage", 405, "method_not_allowed", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			if tc.name == "post" {
				method = "POST"
			}
			status, _, body := a.do(method, tc.path, "")
			code, msg := errorOf(body)
			if status != tc.status || code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Errorf("%d %s %q, want %d %s containing %q", status, code, msg, tc.status, tc.code, tc.msg)
			}
		})
	}
	if status, _, _ := a.doAs(portalToken, "GET", "/admin/v1/tenants/acme/usage", ""); status != http.StatusForbidden {
		t.Errorf("the portal token read usage: %d", status)
	}
}
