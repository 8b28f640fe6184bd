// Package duration reads and writes durations the way people write them:
// Go's units (ns, us, ms, s, m, h) plus d for days, so "30d" and "1h30m"
// mean the same in the config file, the environment, CLI flags and the
// admin API.
package duration

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Day is the d unit: 24 hours (calendar days are not meant; a key that
// expires in 1d expires 24 hours later, whatever the clock change).
const Day = 24 * time.Hour

// maxDays keeps a day count far below time.Duration's ~292-year range.
const maxDays = 100_000

// Parse reads a duration: a Go duration ("90s", "1h30m"), optionally led
// by a whole number of days ("30d", "1d12h"). A number without a unit is
// an error that says which units there are.
func Parse(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, errors.New("empty duration: write a number and a unit, e.g. 30s, 15m, 24h or 7d")
	}
	neg := false
	rest := in
	if rest[0] == '-' || rest[0] == '+' {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	var days time.Duration
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseUint(rest[:i], 10, 64)
		if err != nil || n > maxDays {
			return 0, badDuration(s)
		}
		days = time.Duration(n) * Day
		rest = rest[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil || d < 0 {
			return 0, badDuration(s)
		}
	}
	d += days
	if d < 0 { // overflow
		return 0, badDuration(s)
	}
	if neg {
		d = -d
	}
	return d, nil
}

func badDuration(s string) error {
	if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
		return fmt.Errorf("%q has no unit: write e.g. %ss, %sm, %sh or %sd", s, s, s, s, s)
	}
	return fmt.Errorf("%q is not a duration: use the units d, h, m, s or ms, e.g. 30d, 1h30m or 500ms", s)
}

// Format writes d the way Parse reads it, shortest first: whole days as
// "7d", then Go's notation without trailing zero units ("1h30m", "1.5s").
func Format(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	var b strings.Builder
	b.WriteString(sign)
	if days := d / Day; days > 0 {
		b.WriteString(strconv.FormatInt(int64(days), 10))
		b.WriteByte('d')
		d -= days * Day
		if d == 0 {
			return b.String()
		}
	}
	s := d.String()
	// time.Duration.String writes "1h0m0s" for an hour: drop zero units.
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	b.WriteString(s)
	return b.String()
}

// Value is a duration flag that takes Parse's notation, for flag.Var and
// pflag.Var.
type Value struct{ D *time.Duration }

// String returns the flag's value in Format's notation.
func (v Value) String() string {
	if v.D == nil || *v.D == 0 {
		return ""
	}
	return Format(*v.D)
}

// Set parses s into the flag.
func (v Value) Set(s string) error {
	d, err := Parse(s)
	if err != nil {
		return err
	}
	*v.D = d
	return nil
}

// Type names the flag's value in pflag's help.
func (Value) Type() string { return "duration" }
