package testrun

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address whose port is free now, for a
// server or process the test starts next. (Another process may take it
// first; on a test machine that is rare enough to fail loudly.)
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
