package keys

import (
	"regexp"
	"strings"
	"testing"
)

func TestPattern(t *testing.T) {
	for _, c := range []struct {
		f        Format
		want     string
		match    []string
		no       []string
		generate bool
	}{
		{Format{Prefix: "sk_live_", Env: EnvLive, Checksum: true}, `sk_live_[0-9A-Za-z]{38}`,
			nil, []string{"sk_live_" + strings.Repeat("a", 37), "sk_live_" + strings.Repeat("a", 37) + "-", "sk_test_" + strings.Repeat("a", 38)}, true},
		{Format{Prefix: "cc_live_", Env: EnvLive}, `cc_live_[0-9A-Za-z_-]{8,248}`,
			[]string{"cc_live_abcd-f_h", "cc_live_" + strings.Repeat("Z", 248)}, []string{"cc_live_abcdefg", "cc_live_" + strings.Repeat("Z", 249)}, false},
	} {
		t.Run(c.f.Prefix, func(t *testing.T) {
			if got := c.f.Pattern(); got != c.want {
				t.Errorf("Pattern() = %s, want %s", got, c.want)
			}
			re := regexp.MustCompile(`\A(?:` + c.f.Pattern() + `)\z`)
			fs, err := NewFormats([]Format{c.f})
			if err != nil {
				t.Fatal(err)
			}
			if c.generate {
				for range 200 {
					k, err := Generate(c.f)
					if err != nil {
						t.Fatal(err)
					}
					if !re.MatchString(k) {
						t.Fatalf("%s does not match %s", k, c.f.Pattern())
					}
				}
			}
			for _, k := range c.match {
				if !re.MatchString(k) {
					t.Errorf("%q does not match", k)
				}
				if _, err := fs.Parse(k); err != nil {
					t.Errorf("%q matches but Parse refuses it: %v", k, err)
				}
			}
			for _, k := range c.no {
				if re.MatchString(k) {
					t.Errorf("%q matches", k)
				}
			}
		})
	}
}

// FuzzPattern: every key Parse accepts matches its format's Pattern
// whole, and is bounded by PatternBoundary inside any text.
func FuzzPattern(f *testing.F) {
	fs, err := NewFormats([]Format{{Prefix: "sk_live_", Env: EnvLive, Checksum: true}, {Prefix: "cc_live_", Env: EnvLive}})
	if err != nil {
		f.Fatal(err)
	}
	k, _ := Generate(Format{Prefix: "sk_live_", Env: EnvLive, Checksum: true})
	f.Add(k)
	f.Add("cc_live_abcdefgh-_")
	f.Add("sk_live_")
	f.Fuzz(func(t *testing.T, key string) {
		format, err := fs.Parse(key)
		if err != nil {
			return
		}
		whole := regexp.MustCompile(`\A(?:` + format.Pattern() + `)\z`)
		if !whole.MatchString(key) {
			t.Fatalf("Parse accepts %q, %s does not match it", key, format.Pattern())
		}
		inText := regexp.MustCompile(`(?:` + PatternBoundary + `)(` + format.Pattern() + `)(?:` + PatternBoundary + `)`)
		if m := inText.FindStringSubmatch("token=" + key + "\n"); m == nil || m[1] != key {
			t.Fatalf("%q not found in text: %q", key, m)
		}
	})
}
