//go:build vtprotobuf

package extauthz

import "testing"

// The Makefile builds and tests with -tags vtprotobuf: make sure the tag
// reaches go-control-plane's generated encoder.
func TestFastEncodingWithTag(t *testing.T) {
	if !FastEncoding() {
		t.Fatal("built with -tags vtprotobuf, but CheckResponse has no vtprotobuf encoder")
	}
}
