package web

import (
	"fmt"
	"strconv"
	"time"
)

// usagePoint is one hour's or day's decisions, as a chart draws them.
type usagePoint struct {
	Start                        time.Time
	Allowed, RateLimited, Denied int64
}

// chartView is a usage chart laid out for the SVG the "chart" template
// draws: stacked bars (allowed, rate limited, denied) on a fixed
// viewBox, which CSS scales to the page's width.
type chartView struct {
	ID, Title, Summary string
	Width, Height      int
	Bars               []chartBar
	Ticks              []chartTick
	Max                int64
	Empty              bool
}

type chartBar struct {
	X, W                   float64
	Allowed, Limited, Deny chartRect
	Label                  string // the bar's tooltip: its time and counts
}

type chartRect struct{ Y, H float64 }

type chartTick struct {
	X     float64
	Label string
}

// Chart geometry, in viewBox units.
const (
	chartW, chartH = 720, 180
	chartTop       = 12
	chartBottom    = 24 // room for the time labels
	chartLeft      = 4
)

// newChart lays out pts (in time order, every bucket present): hourly
// labels every 6 hours, daily ones every 5 days.
func newChart(id, title string, pts []usagePoint, hourly bool) chartView {
	c := chartView{ID: id, Title: title, Width: chartW, Height: chartH}
	var allowed, limited, denied int64
	for _, p := range pts {
		c.Max = max(c.Max, p.Allowed+p.RateLimited+p.Denied)
		allowed, limited, denied = allowed+p.Allowed, limited+p.RateLimited, denied+p.Denied
	}
	c.Summary = fmt.Sprintf("%s allowed, %s rate limited, %s denied", group(allowed), group(limited), group(denied))
	c.Empty = c.Max == 0
	if len(pts) == 0 {
		return c
	}
	plot := float64(chartH - chartTop - chartBottom)
	slot := float64(chartW-chartLeft) / float64(len(pts))
	scale := 0.0
	if c.Max > 0 {
		scale = plot / float64(c.Max)
	}
	base := float64(chartH - chartBottom)
	every, layout := 6, "15:04"
	if !hourly {
		every, layout = 5, "Jan 2"
	}
	for i, p := range pts {
		x := chartLeft + float64(i)*slot
		b := chartBar{X: x + slot*0.1, W: slot * 0.8}
		y := base
		for _, part := range []struct {
			r *chartRect
			n int64
		}{{&b.Allowed, p.Allowed}, {&b.Limited, p.RateLimited}, {&b.Deny, p.Denied}} {
			h := float64(part.n) * scale
			y -= h
			*part.r = chartRect{Y: y, H: h}
		}
		when := p.Start.UTC().Format("2006-01-02 15:04 UTC")
		if !hourly {
			when = p.Start.UTC().Format("2006-01-02")
		}
		b.Label = fmt.Sprintf("%s: %d allowed, %d rate limited, %d denied", when, p.Allowed, p.RateLimited, p.Denied)
		c.Bars = append(c.Bars, b)
		if i%every == 0 {
			c.Ticks = append(c.Ticks, chartTick{X: x, Label: p.Start.UTC().Format(layout)})
		}
	}
	return c
}

// group writes n with thousands separators: 12,345.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
