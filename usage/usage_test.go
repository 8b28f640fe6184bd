package usage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

type fakeWriter struct {
	mu      sync.Mutex
	batches []map[string]time.Time
	fail    bool
}

func (f *fakeWriter) TouchLastUsed(_ context.Context, used map[string]time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("database down")
	}
	cp := map[string]time.Time{}
	for k, v := range used {
		cp[k] = v
	}
	f.batches = append(f.batches, cp)
	return nil
}

func newRec(t *testing.T, w writer) *Recorder {
	r, err := New(Config{FlushInterval: time.Hour}, w, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOneWritePerKeyPerFlush(t *testing.T) {
	w := &fakeWriter{}
	r := newRec(t, w)
	base := time.Unix(1000, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				r.Touch([]string{"a", "b", "c"}[i%3], base.Add(time.Duration(g*1000+i)*time.Millisecond))
			}
		}()
	}
	wg.Wait()
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 1 || len(w.batches[0]) != 3 {
		t.Fatalf("8000 touches of 3 keys: %d batches, %v; want one batch of 3", len(w.batches), w.batches)
	}
	for k, at := range w.batches[0] {
		if at.Before(base.Add(7000 * time.Millisecond)) {
			t.Errorf("%s: %v is not the latest use", k, at)
		}
	}
	if err := r.Flush(context.Background()); err != nil || len(w.batches) != 1 {
		t.Errorf("an empty flush wrote: %v", w.batches)
	}
}

func TestFailedFlushLosesNothing(t *testing.T) {
	w := &fakeWriter{fail: true}
	r := newRec(t, w)
	t0 := time.Unix(1000, 0)
	r.Touch("a", t0)
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("want the writer's error")
	}
	r.Touch("a", t0.Add(-time.Second)) // older: must not win
	r.Touch("b", t0)
	w.fail = false
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := w.batches[0]; len(got) != 2 || !got["a"].Equal(t0) || !got["b"].Equal(t0) {
		t.Fatalf("after recovery wrote %v", got)
	}
}

func TestRunFlushesOnShutdown(t *testing.T) {
	w := &fakeWriter{}
	r := newRec(t, w)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	r.Touch("a", time.Now())
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 1 || len(w.batches[0]) != 1 {
		t.Fatalf("pending use not flushed at shutdown: %v", w.batches)
	}
}

func BenchmarkTouch(b *testing.B) {
	r, _ := New(Config{FlushInterval: time.Hour}, &fakeWriter{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r.Touch("key_0123456789abcdefghij", now)
	}
}
