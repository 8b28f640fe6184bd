package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/store"
)

func TestChartLayout(t *testing.T) {
	start := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	var pts []usagePoint
	for i := range 24 {
		pts = append(pts, usagePoint{Start: start.Add(time.Duration(i) * time.Hour)})
	}
	pts[3] = usagePoint{Start: pts[3].Start, Allowed: 1500, RateLimited: 300, Denied: 200}
	pts[10].Allowed = 1000
	c := newChart("d", "Last 24 hours", pts, true)
	if c.Max != 2000 || c.Empty || len(c.Bars) != 24 || len(c.Ticks) != 4 || c.Ticks[1].Label != "06:00" {
		t.Fatalf("chart %+v", c)
	}
	if c.Summary != "2,500 allowed, 300 rate limited, 200 denied" {
		t.Errorf("summary %q", c.Summary)
	}
	b := c.Bars[3]
	plot := float64(chartH - chartTop - chartBottom)
	if h := b.Allowed.H + b.Limited.H + b.Deny.H; h < plot-0.01 || h > plot+0.01 {
		t.Errorf("the tallest bar is %.2f high, want the plot's %.2f", h, plot)
	}
	if b.Deny.Y+b.Deny.H != b.Limited.Y || b.Limited.Y+b.Limited.H != b.Allowed.Y || b.Allowed.Y+b.Allowed.H != float64(chartH-chartBottom) {
		t.Errorf("bar 3 is not stacked on the axis: %+v", b)
	}
	if c.Bars[10].Allowed.H != plot/2 || c.Bars[0].Allowed.H != 0 {
		t.Errorf("bars are not to scale: %+v %+v", c.Bars[10], c.Bars[0])
	}
	if !strings.Contains(b.Label, "2026-01-31 03:00 UTC: 1500 allowed, 300 rate limited, 200 denied") {
		t.Errorf("label %q", b.Label)
	}
	if e := newChart("m", "Last 30 days", nil, false); !e.Empty || e.Summary != "0 allowed, 0 rate limited, 0 denied" {
		t.Errorf("empty chart %+v", e)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q", n, got)
		}
	}
}

// TestPortalUsage: a key's usage is its tenant's to read, as JSON and as
// the key page's two charts; another tenant's is 404.
func TestPortalUsage(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	c := e.cookie(e.link(fullSession()))
	id := createVia(t, e, c)
	theirs := e.createAs("globex")
	hour := time.Now().UTC().Truncate(time.Hour)
	if err := e.db.AddUsage(context.Background(), []store.UsageCount{
		{KeyID: id, Tenant: "acme", Start: hour, Allowed: 40, RateLimited: 2, Denied: 1},
		{KeyID: id, Tenant: "acme", Start: hour.Add(-72 * time.Hour), Allowed: 7},
		{KeyID: theirs.ID, Tenant: "globex", Start: hour, Allowed: 99},
	}); err != nil {
		t.Fatal(err)
	}
	r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys/"+id+"/usage?since=24h&granularity=hour", "", nil, c)
	b := jsonOf(t, r)
	buckets, _ := b["buckets"].([]any)
	if r.StatusCode != 200 || b["key_id"] != id || b["granularity"] != "hour" || len(buckets) < 24 {
		t.Fatalf("usage: %d %v", r.StatusCode, b)
	}
	last := buckets[len(buckets)-1].(map[string]any)
	if last["allowed"] != 40.0 || last["rate_limited"] != 2.0 || last["denied"] != 1.0 {
		t.Errorf("this hour: %v", last)
	}
	if r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys/"+id+"/usage?granularity=week", "", nil, c); r.StatusCode != 400 || !strings.Contains(bodyOf(r), "granularity") {
		t.Errorf("bad granularity: %d", r.StatusCode)
	}
	if r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys/"+theirs.ID+"/usage", "", nil, c); r.StatusCode != 404 {
		t.Errorf("their usage: %d", r.StatusCode)
	}
	page := bodyOf(noRedirect(t, "GET", e.portal.URL+"/portal/keys/"+id, "", nil, c))
	for _, want := range []string{"Last 24 hours", "40 allowed, 2 rate limited, 1 denied", "Last 30 days", "47 allowed, 2 rate limited, 1 denied", `<svg class="chart"`, `class="bar-denied"`} {
		if !strings.Contains(page, want) {
			t.Errorf("key page lacks %q", want)
		}
	}
	ro := e.cookie(e.link(admin.PortalSessionRequest{Tenant: "acme", User: "r"}))
	if r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys/"+id+"/usage", "", nil, ro); r.StatusCode != http.StatusForbidden {
		t.Errorf("usage without usage:read: %d", r.StatusCode)
	}
	if p := bodyOf(noRedirect(t, "GET", e.portal.URL+"/portal/keys/"+id, "", nil, ro)); strings.Contains(p, "<svg") {
		t.Error("a session without usage:read sees the charts")
	}
	// The console charts a tenant's usage, summed over its keys.
	cc, _ := e.signIn(viewerToken)
	cp := bodyOf(noRedirect(t, "GET", e.console.URL+"/console/usage?tenant=acme", "", nil, cc))
	if !strings.Contains(cp, "Usage of acme") || !strings.Contains(cp, "47 allowed") {
		t.Errorf("console usage page: %s", cp)
	}
	if r := noRedirect(t, "GET", e.console.URL+"/console/usage?tenant=a+b", "", nil, cc); r.StatusCode != 400 {
		t.Errorf("bad tenant: %d", r.StatusCode)
	}
}
