package limits

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// stallProxy stands between a client and a Redis server on loopback. It
// passes requests through as they come and replies one by one, and can be
// told to hold a reply back: a Redis that stalls after answering part of
// a pipeline, which no real server can be made to do on cue.
type stallProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu      sync.Mutex
	pass    int           // replies still to pass before the stall; < 0: none armed
	stall   time.Duration // how long to hold the reply after them
	holding chan struct{} // closed when the armed stall begins
	conns   []net.Conn
	wg      sync.WaitGroup
}

// startStallProxy listens on a free loopback port and forwards every
// connection to target. t.Cleanup closes it.
func startStallProxy(t testing.TB, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("stall proxy: %v", err)
	}
	p := &stallProxy{t: t, ln: ln, target: target, pass: -1}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's redis:// URL.
func (p *stallProxy) URL() string { return "redis://" + p.ln.Addr().String() + "/0" }

// stallAfter lets the next n replies through, on whatever connection
// they come, and holds the one after them for d.
// It returns a channel closed when the stall begins.
func (p *stallProxy) stallAfter(n int, d time.Duration) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pass, p.stall, p.holding = n, d, make(chan struct{})
	return p.holding
}

// hold reports how long to hold the reply about to be sent: 0 but for
// the one after the armed count, which disarms the proxy.
func (p *stallProxy) hold() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.pass < 0:
		return 0
	case p.pass > 0:
		p.pass--
		return 0
	}
	p.pass = -1
	close(p.holding)
	return p.stall
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(s, c)
			s.Close()
		}()
		go func() {
			defer p.wg.Done()
			defer c.Close()
			r := bufio.NewReader(s)
			var reply []byte
			for {
				var err error
				if reply, err = readReply(r, reply[:0]); err != nil {
					return
				}
				if d := p.hold(); d > 0 {
					time.Sleep(d) // the stall itself
				}
				if _, err := c.Write(reply); err != nil {
					return
				}
			}
		}()
	}
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// readReply appends one whole RESP2 or RESP3 reply from r to buf.
func readReply(r *bufio.Reader, buf []byte) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return buf, err
	}
	if len(line) < 3 {
		return buf, fmt.Errorf("short RESP line %q", line)
	}
	buf = append(buf, line...)
	head, n := line[0], 0
	switch head {
	case '+', '-', ':', '_', ',', '#', '(':
		return buf, nil
	case '$', '!', '=', '*', '~', '>', '%', '|':
		if n, err = strconv.Atoi(string(line[1 : len(line)-2])); err != nil {
			return buf, fmt.Errorf("RESP length %q: %w", line, err)
		}
	default:
		return buf, fmt.Errorf("unknown RESP type %q", head)
	}
	switch head {
	case '$', '!', '=': // a blob and its CRLF
		if n < 0 {
			return buf, nil
		}
		start := len(buf)
		buf = append(buf, make([]byte, n+2)...)
		_, err = io.ReadFull(r, buf[start:])
		return buf, err
	case '%', '|': // key and value per entry
		n *= 2
	}
	for range max(n, 0) {
		if buf, err = readReply(r, buf); err != nil {
			return buf, err
		}
	}
	if head == '|' { // an attribute precedes the reply it describes
		return readReply(r, buf)
	}
	return buf, nil
}

func TestReadReply(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, in string }{
		{"simple", "+OK\r\n"},
		{"error", "-NOSCRIPT No matching script\r\n"},
		{"integer", ":42\r\n"},
		{"null", "_\r\n"},
		{"bulk", "$5\r\nhe\r\nl\r\n"},
		{"nil bulk", "$-1\r\n"},
		{"gcra answer", "*4\r\n:1\r\n:99\r\n$2\r\n-1\r\n$4\r\n36.0\r\n"},
		{"map", "%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n"},
		{"attribute", "|1\r\n+k\r\n+v\r\n:7\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(io.MultiReader(strings.NewReader(tc.in), strings.NewReader("+NEXT\r\n")))
			got, err := readReply(r, nil)
			if err != nil || string(got) != tc.in {
				t.Fatalf("readReply = %q, %v; want %q", got, err, tc.in)
			}
			if next, err := readReply(r, nil); err != nil || string(next) != "+NEXT\r\n" {
				t.Fatalf("the reply after: %q, %v", next, err)
			}
		})
	}
	if _, err := readReply(bufio.NewReader(strings.NewReader("?x\r\n")), nil); err == nil {
		t.Error("an unknown type was read")
	}
	if _, err := readReply(bufio.NewReader(strings.NewReader("$5\r\nab")), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a cut blob: %v, want unexpected EOF", err)
	}
}
