package duration

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, in string
		want     time.Duration
		err      string
	}{
		{name: "go seconds", in: "90s", want: 90 * time.Second},
		{name: "go compound", in: "1h30m", want: 90 * time.Minute},
		{name: "days", in: "30d", want: 30 * Day},
		{name: "days and hours", in: "1d12h", want: 36 * time.Hour},
		{name: "milliseconds", in: "500ms", want: 500 * time.Millisecond},
		{name: "spaces trimmed", in: " 7d ", want: 7 * Day},
		{name: "negative days", in: "-1d", want: -Day},
		{name: "zero", in: "0s", want: 0},
		{name: "bare number", in: "5", err: `"5" has no unit: write e.g. 5s, 5m, 5h or 5d`},
		{name: "empty", in: "", err: "empty duration"},
		{name: "unknown unit", in: "3w", err: `"3w" is not a duration`},
		{name: "fractional days", in: "1.5d", err: "is not a duration"},
		{name: "days twice", in: "1d2d", err: "is not a duration"},
		{name: "negative after days", in: "1d-2h", err: "is not a duration"},
		{name: "overflowing days", in: "999999999d", err: "is not a duration"},
		{name: "garbage", in: "soon", err: "is not a duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	cases := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{30 * Day, "30d"},
		{36 * time.Hour, "1d12h"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{time.Minute, "1m"},
		{1500 * time.Millisecond, "1.5s"},
		{1718216 * time.Nanosecond, "1.718216ms"},
		{-2 * time.Hour, "-2h"},
	}
	for _, tc := range cases {
		if got := Format(tc.in); got != tc.want {
			t.Errorf("Format(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzRoundTrip: whatever Parse accepts, Format writes back to the same
// duration, and Parse never accepts what time.ParseDuration reads
// differently.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"30d", "1h30m", "5", "-1d2h", "1.5s", "0s", "+3d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if std, err := time.ParseDuration(strings.TrimSpace(s)); err == nil && std != d {
			t.Fatalf("Parse(%q) = %v, time.ParseDuration = %v", s, d, std)
		}
		back, err := Parse(Format(d))
		if err != nil || back != d {
			t.Fatalf("Parse(Format(%v)) = %v, %v (Format %q)", d, back, err, Format(d))
		}
	})
}

func TestValue(t *testing.T) {
	var d time.Duration
	v := Value{D: &d}
	if err := v.Set("2d"); err != nil || d != 2*Day || v.String() != "2d" {
		t.Fatalf("Set(2d): %v, %v, %q", err, d, v.String())
	}
	if err := v.Set("2 days"); err == nil {
		t.Fatal("Set accepted 2 days")
	}
}
