package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

func testFormats(t testing.TB) *Formats {
	t.Helper()
	fs, err := NewFormats([]Format{
		{Prefix: "sk_live_", Env: EnvLive, Checksum: true},
		{Prefix: "sk_test_", Env: EnvTest, Checksum: true},
		{Prefix: "cc_live_", Env: EnvLive, Checksum: false},
		{Prefix: "max_prd_ak_", Env: EnvLive, Checksum: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func mustGenerate(t testing.TB, f Format) string {
	t.Helper()
	k, err := Generate(f)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestGenerateParseRoundTrip(t *testing.T) {
	fs := testFormats(t)
	for _, f := range fs.List() {
		t.Run(f.Prefix, func(t *testing.T) {
			seen := map[string]bool{}
			for range 200 {
				k := mustGenerate(t, f)
				if seen[k] {
					t.Fatalf("duplicate key %s", k)
				}
				seen[k] = true
				got, err := fs.Parse(k)
				if err != nil {
					t.Fatalf("Parse(%q): %v", k, err)
				}
				if got.Prefix != f.Prefix || got.Env != f.Env {
					t.Fatalf("Parse(%q) = %+v, want %+v", k, got, f)
				}
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	fs := testFormats(t)
	good := mustGenerate(t, Format{Prefix: "sk_live_", Env: EnvLive, Checksum: true})
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := []struct {
		name, key, why string
	}{
		{"empty", "", "unknown prefix"},
		{"unknown prefix", "pk_live_" + good[8:], "unknown prefix"},
		{"prefix only", "sk_live_", "wrong length"},
		{"short", good[:len(good)-1], "wrong length"},
		{"long", good + "a", "wrong length"},
		{"typo in random part", flip(good, 12), "checksum"},
		{"typo in checksum", flip(good, len(good)-1), "checksum"},
		{"non-base62", good[:12] + "-" + good[13:], "base62"},
		{"non-ascii", good[:12] + "é" + good[14:], "base62"},
		{"huge", "sk_live_" + strings.Repeat("a", 10000), "longer than"},
		{"imported too short", "cc_live_abc", "shorter"},
		{"imported bad char", "cc_live_abcdefghijk lmnop", "outside"},
		{"upper-case prefix", strings.ToUpper(good[:8]) + good[8:], "unknown prefix"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := fs.Parse(c.key)
			if err == nil {
				t.Fatalf("Parse(%q) accepted a bad key", c.key)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.why) {
				t.Errorf("error %q does not say %q", err, c.why)
			}
		})
	}
}

func TestParseAcceptsImportedWithoutChecksum(t *testing.T) {
	fs := testFormats(t)
	for _, k := range []string{"cc_live_AbCdEfGhIjKlMnOpQrSt", "cc_live_0123456789abcdef_-x"} {
		if f, err := fs.Parse(k); err != nil || f.Prefix != "cc_live_" {
			t.Errorf("Parse(%q) = %v, %v", k, f, err)
		}
	}
}

func TestLongestPrefixWins(t *testing.T) {
	fs, err := NewFormats([]Format{{Prefix: "sk_", Env: EnvLive, Checksum: true}, {Prefix: "sk_test_", Env: EnvTest, Checksum: true}})
	if err != nil {
		t.Fatal(err)
	}
	k := mustGenerate(t, Format{Prefix: "sk_test_", Env: EnvTest, Checksum: true})
	if f, err := fs.Parse(k); err != nil || f.Env != EnvTest {
		t.Fatalf("Parse(%q) = %+v, %v; want the sk_test_ format", k, f, err)
	}
}

func TestNewFormatsValidates(t *testing.T) {
	cases := []struct {
		name string
		fs   []Format
		want string
	}{
		{"none", nil, "at least one"},
		{"empty prefix", []Format{{Prefix: "", Env: EnvLive}}, "key_formats[0].prefix"},
		{"bad env", []Format{{Prefix: "sk_", Env: "prod"}}, "key_formats[0].env"},
		{"duplicate", []Format{{Prefix: "sk_", Env: EnvLive}, {Prefix: "sk_", Env: EnvTest}}, "key_formats[1].prefix"},
		{"bad char", []Format{{Prefix: "sk-live", Env: EnvLive}}, "key_formats[0].prefix"},
		{"too long", []Format{{Prefix: "abcdefghijklmno_", Env: EnvLive}}, "longer than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewFormats(c.fs)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewFormats: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestDisplayPrefixAndLast4(t *testing.T) {
	k := "cc_live_AbCdEfGhIjKlMnOpQrStUvWx"
	if got := DisplayPrefix(k); got != "cc_live_AbCdEfG" {
		t.Errorf("DisplayPrefix = %q, want cc_live_AbCdEfG (CashCat's 15 characters)", got)
	}
	if got := Last4(k); got != "UvWx" {
		t.Errorf("Last4 = %q", got)
	}
}

func TestHasher(t *testing.T) {
	k := "sk_test_x"
	plain := NewHasher(nil).Sum(k)
	if len(plain.String()) != 64 {
		t.Fatal("hex form")
	}
	h, err := ParseHash(plain.String())
	if err != nil || h != plain {
		t.Fatalf("ParseHash round trip: %v", err)
	}
	p1, p2 := NewHasher([]byte("pepper-1")), NewHasher([]byte("pepper-2"))
	if p1.Sum(k) == plain || p1.Sum(k) == p2.Sum(k) {
		t.Fatal("peppered hashes must differ from plain SHA-256 and from each other")
	}
	if a, b := p1.Sum(k), p1.Sum(k); a != b {
		t.Fatal("peppered hash is not deterministic")
	}
	for _, bad := range []string{"", "zz", strings.Repeat("g", 64)} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

// TestHasherSums: the hashes are the standard SHA-256 and HMAC-SHA256 of
// the key, for keys within MaxLen (hashed from a buffer) and beyond it,
// and a pooled HMAC keeps nothing of the key before.
func TestHasherSums(t *testing.T) {
	pepper := []byte("pepper")
	plain, peppered := NewHasher(nil), NewHasher(pepper)
	for _, k := range []string{"", "sk_live_abc", strings.Repeat("k", MaxLen), strings.Repeat("k", MaxLen+1), "sk_live_abc"} {
		if got, want := plain.Sum(k), Hash(sha256.Sum256([]byte(k))); got != want {
			t.Errorf("Sum(%d bytes) = %s, want SHA-256 %s", len(k), got, want)
		}
		m := hmac.New(sha256.New, pepper)
		m.Write([]byte(k))
		if got, want := peppered.Sum(k), Hash(m.Sum(nil)); got != want {
			t.Errorf("peppered Sum(%d bytes) = %s, want HMAC-SHA256 %s", len(k), got, want)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	k := mustGenerate(b, Format{Prefix: "sk_live_", Env: EnvLive, Checksum: true})
	for name, h := range map[string]*Hasher{"sha256": NewHasher(nil), "hmac": NewHasher([]byte("pepper"))} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.Sum(k)
			}
		})
	}
}

// FuzzParse checks the parser on arbitrary input: it never panics, accepts
// only keys of a configured prefix within MaxLen, and a checksummed key it
// accepts still fails once any single character of it changes.
func FuzzParse(f *testing.F) {
	fs := testFormats(f)
	for _, p := range []string{"sk_live_", "sk_test_", "max_prd_ak_"} {
		f.Add(mustGenerate(f, Format{Prefix: p, Checksum: true}))
	}
	f.Add("cc_live_AbCdEfGhIjKlMnOp")
	f.Add("sk_live_")
	f.Add("Bearer sk_live_abc")
	f.Add("sk_live_\x00\xff")
	f.Fuzz(func(t *testing.T, key string) {
		fm, err := fs.Parse(key)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !strings.HasPrefix(key, fm.Prefix) || len(key) > MaxLen {
			t.Fatalf("accepted %q as %+v", key, fm)
		}
		if !fm.Checksum {
			return
		}
		for i := len(fm.Prefix); i < len(key); i++ {
			b := []byte(key)
			b[i] = base62[(strings.IndexByte(base62, b[i])+1)%62]
			if _, err := fs.Parse(string(b)); err == nil {
				t.Fatalf("accepted %q, a one-character change of %q", b, key)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	fs := testFormats(b)
	k := mustGenerate(b, Format{Prefix: "sk_live_", Env: EnvLive, Checksum: true})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fs.Parse(k); err != nil {
			b.Fatal(err)
		}
	}
}

func TestChecksumIsCRC32IEEE(t *testing.T) {
	for _, s := range []string{"", "sk_live_", "sk_live_0123456789abcdefghijABCDEFGHIJ01"} {
		v := crc32.ChecksumIEEE([]byte(s))
		var want [ChecksumLen]byte
		for i := ChecksumLen - 1; i >= 0; i-- {
			want[i] = base62[v%62]
			v /= 62
		}
		if got := checksum(s); got != string(want[:]) {
			t.Errorf("checksum(%q) = %s, want %s", s, got, want)
		}
	}
}
