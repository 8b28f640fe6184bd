package usage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/store"
)

// fakeWriter keeps what it is given; while fail is set it refuses.
type fakeWriter struct {
	mu     sync.Mutex
	counts [][]store.UsageCount
	used   []map[string]time.Time
	fail   int // refuse this many writes more; -1: all
}

func (f *fakeWriter) refuse() bool {
	if f.fail == 0 {
		return false
	}
	if f.fail > 0 {
		f.fail--
	}
	return true
}

func (f *fakeWriter) AddUsage(_ context.Context, b []store.UsageCount) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse() {
		return errors.New("database down")
	}
	f.counts = append(f.counts, slices.Clone(b))
	return nil
}

func (f *fakeWriter) TouchLastUsed(_ context.Context, used map[string]time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse() {
		return errors.New("database down")
	}
	cp := map[string]time.Time{}
	for k, v := range used {
		cp[k] = v
	}
	f.used = append(f.used, cp)
	return nil
}

func (f *fakeWriter) setFail(n int) {
	f.mu.Lock()
	f.fail = n
	f.mu.Unlock()
}

// total renders every count written, summed per key and hour, sorted.
func (f *fakeWriter) total() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	sum := map[string]*[3]int64{}
	for _, b := range f.counts {
		for _, c := range b {
			k := fmt.Sprintf("%s/%s@%s", c.KeyID, c.Tenant, c.Start.Format("15:04"))
			if sum[k] == nil {
				sum[k] = &[3]int64{}
			}
			sum[k][0] += c.Allowed
			sum[k][1] += c.RateLimited
			sum[k][2] += c.Denied
		}
	}
	var lines []string
	for k, n := range sum {
		lines = append(lines, fmt.Sprintf("%s %d/%d/%d", k, n[0], n[1], n[2]))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func newRec(t testing.TB, w writer) *Recorder {
	r, err := New(Config{FlushInterval: time.Hour}, w, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var base = time.Date(2026, 5, 6, 10, 0, 0, 0, time.UTC)

// TestCountsPerKeyHourOutcome: concurrent decisions are counted exactly,
// per key, hour and outcome, in one batch of one row per key and hour;
// last use is the latest allowed decision only.
func TestCountsPerKeyHourOutcome(t *testing.T) {
	w := &fakeWriter{}
	r := newRec(t, w)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 900 {
				at := base.Add(time.Duration(i%2)*time.Hour + time.Duration(g)*time.Second)
				r.Record([]string{"a", "b", "c"}[i%3], "acme", Outcome(i/300), at)
			}
		}()
	}
	wg.Wait()
	r.Record("z", "other", RateLimited, base.Add(5*time.Hour)) // never allowed: no last use
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Each goroutine: per outcome 300 decisions, 100 per key, 50 per hour.
	want := strings.Join([]string{
		"a/acme@10:00 400/400/400", "a/acme@11:00 400/400/400",
		"b/acme@10:00 400/400/400", "b/acme@11:00 400/400/400",
		"c/acme@10:00 400/400/400", "c/acme@11:00 400/400/400",
		"z/other@15:00 0/1/0",
	}, "\n")
	if got := w.total(); got != want {
		t.Fatalf("written\n%s\nwant\n%s", got, want)
	}
	if len(w.counts) != 1 || len(w.counts[0]) != 7 {
		t.Errorf("%d batches, first of %d rows; want one of 7", len(w.counts), len(w.counts[0]))
	}
	latest := base.Add(time.Hour + 7*time.Second)
	if len(w.used) != 1 || len(w.used[0]) != 3 || !w.used[0]["a"].Equal(latest) {
		t.Errorf("last use written %v; want a, b and c at %v", w.used, latest)
	}
	if err := r.Flush(t.Context()); err != nil || len(w.counts) != 1 || len(w.used) != 1 {
		t.Errorf("an empty flush wrote: %v", err)
	}
	if st := r.Stats(); st.Pending != 0 || st.Written != 7 || st.FlushFailures != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestFailedFlushLosesNothing: while writes fail, counts are kept and
// added to what comes after; last use never moves back.
func TestFailedFlushLosesNothing(t *testing.T) {
	w := &fakeWriter{fail: -1}
	r := newRec(t, w)
	r.Record("a", "acme", Allowed, base.Add(time.Minute))
	r.Record("a", "acme", Denied, base)
	for range 3 {
		if err := r.Flush(t.Context()); err == nil {
			t.Fatal("want the writer's error")
		}
		r.Record("a", "acme", Allowed, base.Add(time.Second)) // older: not the last use
		r.Record("b", "acme", RateLimited, base.Add(time.Hour))
	}
	if st := r.Stats(); st.Pending != 2 || st.FlushFailures != 6 {
		t.Errorf("stats while down %+v; want 2 key-hours pending, 6 failures", st)
	}
	w.setFail(0)
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := w.total(), "a/acme@10:00 4/0/1\nb/acme@11:00 0/3/0"; got != want {
		t.Errorf("after recovery wrote\n%s\nwant\n%s", got, want)
	}
	if len(w.used) != 1 || !w.used[0]["a"].Equal(base.Add(time.Minute)) {
		t.Errorf("last use %v, want a at %v", w.used, base.Add(time.Minute))
	}
}

// TestRunFlushesOnShutdown: what was counted is written when Run's
// context ends, through a write that fails once.
func TestRunFlushesOnShutdown(t *testing.T) {
	w := &fakeWriter{}
	r := newRec(t, w)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	r.Record("a", "acme", Allowed, base)
	w.setFail(1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := w.total(); got != "a/acme@10:00 1/0/0" || len(w.used) != 1 {
		t.Fatalf("not flushed at shutdown: %q, %v", got, w.used)
	}
}

// TestRunFlushesOnItsTickers: counts and last use are each written on
// their own interval.
func TestRunFlushesOnItsTickers(t *testing.T) {
	w := &fakeWriter{}
	r, err := New(Config{FlushInterval: 20 * time.Millisecond, LastUsedInterval: time.Hour}, w, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	r.Record("a", "acme", Allowed, base)
	deadline := time.Now().Add(5 * time.Second)
	for w.total() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.counts) == 0 || len(w.used) != 0 {
		t.Errorf("after the counts' interval: %d count batches, %d last-use batches; want counts only", len(w.counts), len(w.used))
	}
}

func TestNewRefuses(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name string
		cfg  Config
		w    writer
	}{
		{"no interval", Config{}, &fakeWriter{}},
		{"negative last-used interval", Config{FlushInterval: time.Second, LastUsedInterval: -1}, &fakeWriter{}},
		{"no writer", Config{FlushInterval: time.Second}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, tc.w, log); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestRecordAllocatesNothing: a key's later decisions in an hour cost no
// allocation.
func TestRecordAllocatesNothing(t *testing.T) {
	r := newRec(t, &fakeWriter{})
	id := strings.Repeat("k", 24)
	r.Record(id, "acme", Allowed, base)
	if n := testing.AllocsPerRun(1000, func() { r.Record(id, "acme", Allowed, base) }); n != 0 {
		t.Errorf("%v allocations per Record", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	r := newRec(b, &fakeWriter{})
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("key_%020d", i)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Record(ids[i%len(ids)], "acme", Allowed, now)
			i++
		}
	})
}

// TestLastUsedOnItsOwn: last use is written by its own flush, before and
// apart from the counts, once per new use.
func TestLastUsedOnItsOwn(t *testing.T) {
	w := &fakeWriter{}
	r := newRec(t, w)
	r.Record("a", "acme", Allowed, base.Add(time.Minute))
	r.Record("a", "acme", Allowed, base.Add(-time.Minute)) // the hour before, earlier
	r.Record("b", "acme", Denied, base)
	if err := r.FlushLastUsed(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(w.used) != 1 || len(w.used[0]) != 1 || !w.used[0]["a"].Equal(base.Add(time.Minute)) || len(w.counts) != 0 {
		t.Fatalf("last use %v, counts %v; want a at %v and no counts", w.used, w.counts, base.Add(time.Minute))
	}
	if err := r.FlushLastUsed(t.Context()); err != nil || len(w.used) != 1 {
		t.Errorf("a use written twice: %v", w.used)
	}
	r.Record("a", "acme", Allowed, base.Add(2*time.Minute))
	if err := r.FlushCounts(t.Context()); err != nil { // takes the entries, keeps their last use
		t.Fatal(err)
	}
	if err := r.FlushLastUsed(t.Context()); err != nil || len(w.used) != 2 || !w.used[1]["a"].Equal(base.Add(2*time.Minute)) {
		t.Errorf("last use after a counts flush: %v (%v)", w.used, err)
	}
	if got, want := w.total(), "a/acme@09:00 1/0/0\na/acme@10:00 2/0/0\nb/acme@10:00 0/0/1"; got != want {
		t.Errorf("counts\n%s\nwant\n%s", got, want)
	}
}

// TestOutageLoggedOnce: an outage is one warning and its end one line,
// not a line per failed flush.
func TestOutageLoggedOnce(t *testing.T) {
	w := &fakeWriter{fail: -1}
	logs := &syncbuf.Buffer{}
	r, err := New(Config{FlushInterval: 10 * time.Millisecond}, w, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	r.Record("a", "acme", Allowed, base)
	for r.Stats().FlushFailures < 6 {
		time.Sleep(5 * time.Millisecond)
	}
	w.setFail(0)
	for w.total() == "" {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // more flushes, with nothing to write
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "writing usage failed"); n != 1 {
		t.Errorf("%d failure lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "writing usage again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, out)
	}
}

// stallWriter holds every write until released, then refuses it: a
// database that is down and makes each write wait for its timeout.
type stallWriter struct {
	entered chan struct{}
	release chan struct{}
}

func (w *stallWriter) AddUsage(context.Context, []store.UsageCount) error {
	w.entered <- struct{}{}
	<-w.release
	return errors.New("database down")
}

func (w *stallWriter) TouchLastUsed(context.Context, map[string]time.Time) error {
	w.entered <- struct{}{}
	<-w.release
	return errors.New("database down")
}

// TestPendingWhileAWriteWaits: what a flush has taken out to write still
// counts as pending while the write waits on a database that is down,
// and is pending again (not twice) once it failed.
func TestPendingWhileAWriteWaits(t *testing.T) {
	w := &stallWriter{entered: make(chan struct{}), release: make(chan struct{})}
	r := newRec(t, w)
	r.Record("a", "acme", Allowed, base)
	r.Record("b", "acme", Allowed, base)
	r.Record("b", "acme", Denied, base.Add(time.Hour))
	for _, tc := range []struct {
		name    string
		flush   func(context.Context) error
		pending func(Stats) int
	}{
		// A counts flush hands the rows' last use to the last-use
		// flush, so each flush is held to its own gauge.
		{"counts", r.FlushCounts, func(st Stats) int { return st.Pending }},
		{"last use", r.FlushLastUsed, func(st Stats) int { return st.PendingUsed }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.pending(r.Stats())
			if before == 0 {
				t.Fatalf("nothing pending before the flush: %+v", r.Stats())
			}
			done := make(chan error)
			go func() { done <- tc.flush(t.Context()) }()
			<-w.entered
			if got := tc.pending(r.Stats()); got != before {
				t.Errorf("while the write waits: %d pending, want %d as before it", got, before)
			}
			close(w.release)
			if err := <-done; err == nil {
				t.Fatal("want the writer's error")
			}
			w.release = make(chan struct{})
			if got := tc.pending(r.Stats()); got != before {
				t.Errorf("after the failed write: %d pending, want %d as before it", got, before)
			}
		})
	}
}
