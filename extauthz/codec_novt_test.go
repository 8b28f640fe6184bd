//go:build !vtprotobuf

package extauthz

import "testing"

func TestFastEncodingWithoutTag(t *testing.T) {
	if FastEncoding() {
		t.Fatal("built without -tags vtprotobuf, yet CheckResponse has a vtprotobuf encoder")
	}
}
