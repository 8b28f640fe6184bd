package httpurl

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"https://hooks.example.com/keygate?x=1", ""},
		{"http://127.0.0.1:8080/", ""},
		{"", "required"},
		{"https://exa mple.com/", "is not a URL"},
		{"ftp://files.example.com/", "the scheme must be https"},
		{"/relative/path", "the scheme must be https"},
		{"https:///nohost", "has no host"},
		{"https://user:secret@example.com/", "must not hold credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			u, err := Parse(tc.in)
			if tc.wantErr == "" {
				if err != nil || u == nil {
					t.Fatalf("Parse(%q) = %v, %v; want a URL", tc.in, u, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse(%q) error = %v, want one saying %q", tc.in, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("the error repeats the password: %v", err)
			}
		})
	}
}
