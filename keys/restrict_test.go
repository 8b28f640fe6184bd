package keys

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseCIDRs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   []string
		want []string // nil with err
		err  string
	}{
		{"none", nil, nil, ""},
		{"ipv4 and ipv6, comma list", []string{"10.0.0.0/8,2001:db8::/32"}, []string{"10.0.0.0/8", "2001:db8::/32"}, ""},
		{"repeated flags", []string{"10.0.0.0/8", "192.168.1.0/24"}, []string{"10.0.0.0/8", "192.168.1.0/24"}, ""},
		{"normalised", []string{"10.1.2.3/8", "2001:db8:ffff::1/32"}, []string{"10.0.0.0/8", "2001:db8::/32"}, ""},
		{"spaces", []string{" 10.0.0.0/8 , 192.0.2.7/32"}, []string{"10.0.0.0/8", "192.0.2.7/32"}, ""},
		{"deduplicated", []string{"10.0.0.0/8,10.9.9.9/8"}, []string{"10.0.0.0/8"}, ""},
		{"host", []string{"192.0.2.7/32", "::1/128"}, []string{"192.0.2.7/32", "::1/128"}, ""},
		{"bare address", []string{"192.0.2.7"}, nil, `"192.0.2.7" is not a network in CIDR notation`},
		{"bad length", []string{"10.0.0.0/33"}, nil, `"10.0.0.0/33" is not a network`},
		{"garbage", []string{"example.com/8"}, nil, "is not a network"},
		{"zone", []string{"fe80::1%eth0/64"}, nil, "is not a network"},
		{"empty element", []string{"10.0.0.0/8,"}, nil, "an empty network"},
		{"empty", []string{""}, nil, "an empty network"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCIDRs(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseCIDRs(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := FormatCIDRs(got); !slices.Equal(s, tc.want) && (len(s) != 0 || len(tc.want) != 0) {
				t.Fatalf("ParseCIDRs(%q) = %v, want %v", tc.in, s, tc.want)
			}
		})
	}
	var many []string
	for i := range MaxCIDRs + 1 {
		many = append(many, netip.AddrFrom4([4]byte{10, byte(i), 0, 0}).String()+"/16")
	}
	if _, err := ParseCIDRs(many[:MaxCIDRs]); err != nil {
		t.Fatalf("%d networks: %v", MaxCIDRs, err)
	}
	if _, err := ParseCIDRs(many); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Fatalf("%d networks: %v, want at most 32", len(many), err)
	}
}

func TestAllowsAddr(t *testing.T) {
	t.Parallel()
	ps, err := ParseCIDRs([]string{"10.0.0.0/8,2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	r := Record{AllowedCIDRs: ps}
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "11.0.0.1": false, "2001:db8::7": true, "2001:db9::7": false,
		"::ffff:10.1.2.3": true, "::ffff:11.1.2.3": false, "::1": false,
	} {
		if got := r.AllowsAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("AllowsAddr(%s) = %v, want %v", addr, got, want)
		}
	}
	if r.AllowsAddr(netip.Addr{}) {
		t.Error("an unknown address is allowed")
	}
	if open := (Record{}); !open.AllowsAddr(netip.Addr{}) {
		t.Error("a key without networks refuses a request")
	}
}

func TestParseMetadata(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("v", MaxMetaValueLen)
	cases := []struct {
		name string
		in   []string
		want map[string]string
		err  string
	}{
		{"none", nil, nil, ""},
		{"two", []string{"team=billing", "owner=jane"}, map[string]string{"team": "billing", "owner": "jane"}, ""},
		{"value with =", []string{"q=a=b"}, map[string]string{"q": "a=b"}, ""},
		{"longest", []string{"k=" + long, strings.Repeat("k", MaxMetaKeyLen) + "=1"}, map[string]string{"k": long, strings.Repeat("k", MaxMetaKeyLen): "1"}, ""},
		{"no =", []string{"team"}, nil, `"team" is not KEY=VALUE`},
		{"twice", []string{"team=a", "team=b"}, nil, `key "team" is given twice`},
		{"upper case key", []string{"Team=a"}, nil, `key "Team" must be 1–64 characters of a-z`},
		{"empty key", []string{"=a"}, nil, `key "" must be`},
		{"key too long", []string{strings.Repeat("k", MaxMetaKeyLen+1) + "=a"}, nil, "must be 1–64 characters"},
		{"empty value", []string{"team="}, nil, "team: the value must be 1–256 characters, got 0"},
		{"value too long", []string{"team=" + long + "v"}, nil, "got 257"},
		{"control character", []string{"team=a\r\nx-evil: 1"}, nil, "team: the value must be printable ASCII, got byte 0xd at 1"},
		{"non-ASCII", []string{"team=é"}, nil, "printable ASCII"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMetadata(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseMetadata(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ParseMetadata(%q) = %v, want %v", tc.in, got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("ParseMetadata(%q) = %v, want %v", tc.in, got, tc.want)
				}
			}
		})
	}
	many := map[string]string{}
	for i := range MaxMetadata + 1 {
		many[string(rune('a'+i))] = "x"
	}
	if err := ValidateMetadata(many); err == nil || !strings.Contains(err.Error(), "at most 16") {
		t.Fatalf("17 entries: %v", err)
	}
}

// FuzzParseCIDRs: whatever it accepts is bounded, normalised, free of
// duplicates and reads back the same.
func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8,2001:db8::/32", "10.1.2.3/8", "", ",", "::ffff:1.2.3.4/120", "fe80::1%eth0/64", "1.2.3.4/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseCIDRs([]string{s})
		if err != nil {
			return
		}
		if len(ps) > MaxCIDRs {
			t.Fatalf("%d networks", len(ps))
		}
		for i, p := range ps {
			if !p.IsValid() || p != p.Masked() || slices.Contains(ps[:i], p) {
				t.Fatalf("ParseCIDRs(%q) kept %v", s, p)
			}
		}
		again, err := ParseCIDRs(FormatCIDRs(ps))
		if err != nil || !slices.Equal(again, ps) {
			t.Fatalf("round trip of %v: %v, %v", ps, again, err)
		}
	})
}

// FuzzParseMetadata: whatever it accepts is within bounds and header-safe.
func FuzzParseMetadata(f *testing.F) {
	f.Add("team=billing", "owner=jane")
	f.Add("team=a\r\nb", "x=")
	f.Add("=", "Team=x")
	f.Fuzz(func(t *testing.T, a, b string) {
		m, err := ParseMetadata([]string{a, b})
		if err != nil {
			return
		}
		if len(m) == 0 || len(m) > MaxMetadata {
			t.Fatalf("%d entries", len(m))
		}
		for k, v := range m {
			if validMetaKey(k) != nil || len(v) == 0 || len(v) > MaxMetaValueLen || strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("accepted %q=%q", k, v)
			}
		}
	})
}
