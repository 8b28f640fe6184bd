package limits

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	// errClosed answers the commands still queued when the Limiter closes.
	errClosed = errors.New("limits: closed")
	// errUnsent marks the commands of a check that gave up before they
	// were sent.
	errUnsent = errors.New("limits: not sent, the check gave up")
)

// pipeline coalesces the Redis commands of concurrent checks: a check
// queues all its commands as one op and waits; one flusher goroutine sends
// whatever is queued as a single pipeline (go-redis splits it into one
// pipeline per node on a Cluster and runs those side by side), then wakes
// every waiter of the batch.
//
// A batch leaves when the flusher is free and either the window has passed
// since it began waiting or the queue holds limit commands, whichever comes
// first. The window is only waited for while checks come faster than one
// per round trip (the last batch held more than one op): a lone check is
// sent at once, not held for a timer. While one batch is out, the next
// gathers, so the size of a batch follows the load.
//
// The queue is a lock-free stack (one compare-and-swap per check); the
// flusher takes it whole and reverses it, so commands leave in the order
// they came. A check waits at most its own deadline: if the answer comes
// later, the flusher hands it to onAbandoned (which gives back what Redis
// spent for a check that no longer counts it).
type pipeline struct {
	rdb     redis.UniversalClient
	log     *slog.Logger
	window  time.Duration
	limit   int
	timeout time.Duration
	scripts map[string]string // SHA-1 → source, to resend after NOSCRIPT
	// onAbandoned receives a waited-for op whose waiter gave up before its
	// answers came; it runs on the flusher and must not block.
	onAbandoned func(*op)

	head      atomic.Pointer[op] // queued ops, newest first
	wake      chan struct{}      // cap 1: the queue became non-empty or reached limit
	stop      chan struct{}
	done      chan struct{}
	closed    atomic.Bool
	startOnce sync.Once // the flusher starts with the first command
	closeOnce sync.Once
	pool      sync.Pool

	roundTrips atomic.Uint64 // pipelines sent
	commands   atomic.Uint64 // commands sent

	// The flusher's own.
	lastOps int
	ops     []*op
	sent    []sent
	cmds    []redis.Cmder
}

// Op states.
const (
	opQueued    int32 = iota // the pipeline owns it
	opDone                   // answered; the waiter owns it
	opAbandoned              // the waiter gave up; the pipeline owns it
)

// op is one check's commands, sent in one pipeline.
type op struct {
	next *op
	// depth counts the commands queued up to and including this op. It
	// is atomic because a pusher may read it from an op that the flusher
	// has meanwhile taken, answered and recycled: the CAS that follows
	// then fails, or (the op queued again as the head) links correctly,
	// and only the count is off, which merely moves when a batch leaves.
	depth atomic.Int64
	cmds  []redis.Cmder
	state atomic.Int32
	ready chan struct{} // cap 1, signalled once when answered
	timer *time.Timer   // the waiter's deadline; stopped while pooled
	// noWait ops (refunds) have no waiter: the flusher logs their failures
	// and recycles them.
	noWait bool
}

// sent places a command of the batch in its op.
type sent struct {
	op *op
	i  int
}

type pipelineConfig struct {
	window, timeout time.Duration
	limit           int
	scripts         []string // sources of the scripts sent by EVALSHA
	onAbandoned     func(*op)
}

func newPipeline(rdb redis.UniversalClient, log *slog.Logger, cfg pipelineConfig) *pipeline {
	p := &pipeline{
		rdb: rdb, log: log, window: cfg.window, limit: cfg.limit, timeout: cfg.timeout,
		scripts: map[string]string{}, onAbandoned: cfg.onAbandoned,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, src := range cfg.scripts {
		p.scripts[redis.NewScript(src).Hash()] = src
	}
	p.pool.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return &op{ready: make(chan struct{}, 1), timer: t}
	}
	return p
}

// newOp returns an empty op from the pool.
func (p *pipeline) newOp() *op { return p.pool.Get().(*op) }

// release recycles an op its waiter has read.
func (p *pipeline) release(o *op) {
	clear(o.cmds)
	o.cmds, o.next, o.noWait = o.cmds[:0], nil, false
	o.depth.Store(0)
	o.state.Store(opQueued)
	p.pool.Put(o)
}

// push queues o and wakes the flusher when o is the first of a batch or
// brings the queue to limit.
func (p *pipeline) push(o *op) {
	p.startOnce.Do(func() { go p.run() })
	for {
		prev := p.head.Load()
		depth, before := int64(len(o.cmds)), int64(0)
		if prev != nil {
			before = prev.depth.Load()
			depth += before
		}
		o.next = prev
		o.depth.Store(depth)
		if p.head.CompareAndSwap(prev, o) {
			if prev == nil || before < int64(p.limit) && depth >= int64(p.limit) {
				select {
				case p.wake <- struct{}{}:
				default:
				}
			}
			return
		}
	}
}

// do queues o and waits for its answers, at most timeout and as long as
// ctx lasts. On nil each of o.cmds holds its answer (or its own error)
// and the caller releases o; on an error the pipeline keeps o. (A timer
// of the op's own, not a context with a deadline: that would cost three
// allocations and two locks of the parent context per check.)
func (p *pipeline) do(ctx context.Context, o *op, timeout time.Duration) error {
	if p.closed.Load() {
		p.release(o)
		return errClosed
	}
	p.push(o)
	o.timer.Reset(timeout)
	var err error
	select {
	case <-o.ready:
		o.timer.Stop()
		return nil
	case <-o.timer.C:
		err = context.DeadlineExceeded
	case <-ctx.Done():
		o.timer.Stop()
		err = ctx.Err()
	}
	if o.state.CompareAndSwap(opQueued, opAbandoned) {
		return err
	}
	<-o.ready // answered meanwhile: the signal is on its way
	return nil
}

// send queues o with nobody waiting for it.
func (p *pipeline) send(o *op) {
	if p.closed.Load() {
		p.release(o)
		return
	}
	o.noWait = true
	p.push(o)
}

// close stops the flusher; commands still queued fail with errClosed.
func (p *pipeline) close() {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.startOnce.Do(func() { close(p.done) }) // never started
		close(p.stop)
		<-p.done
	})
}

func (p *pipeline) run() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			p.fail(p.head.Swap(nil), errClosed)
			return
		}
		if p.window > 0 && p.lastOps > 1 {
			timer.Reset(p.window)
		gather:
			for {
				if h := p.head.Load(); h != nil && h.depth.Load() >= int64(p.limit) {
					break
				}
				select {
				case <-timer.C:
					break gather
				case <-p.wake:
				case <-p.stop:
					timer.Stop()
					p.fail(p.head.Swap(nil), errClosed)
					return
				}
			}
			timer.Stop()
		}
		if list := p.head.Swap(nil); list != nil {
			p.flush(list)
		}
	}
}

// flush sends the ops of list, oldest first, in pipelines of at most
// limit commands (an op is never split), and hands out the answers.
func (p *pipeline) flush(list *op) {
	ops := p.ops[:0]
	for o := list; o != nil; o = o.next {
		ops = append(ops, o)
	}
	for i, j := 0, len(ops)-1; i < j; i, j = i+1, j-1 {
		ops[i], ops[j] = ops[j], ops[i]
	}
	p.lastOps = len(ops)
	for start := 0; start < len(ops); {
		cmds, sentAt, end := p.cmds[:0], p.sent[:0], start
		for ; end < len(ops) && (end == start || len(cmds)+len(ops[end].cmds) <= p.limit); end++ {
			o := ops[end]
			if o.state.Load() == opAbandoned {
				for _, c := range o.cmds {
					c.SetErr(errUnsent) // given up before it was sent: nothing spent
				}
				continue
			}
			for i, c := range o.cmds {
				cmds = append(cmds, c)
				sentAt = append(sentAt, sent{o, i})
			}
		}
		if len(cmds) > 0 {
			p.exec(cmds, sentAt)
		}
		for _, o := range ops[start:end] {
			p.answer(o)
		}
		clear(cmds)
		clear(sentAt)
		p.cmds, p.sent = cmds, sentAt
		start = end
	}
	clear(ops)
	p.ops = ops[:0]
}

// exec runs one pipeline, then once more with EVAL for the scripts Redis
// did not have (a restart or a failover empties its script cache).
func (p *pipeline) exec(cmds []redis.Cmder, at []sent) {
	p.roundTrips.Add(1)
	p.commands.Add(uint64(len(cmds)))
	p.pipelined(cmds)
	var again []redis.Cmder
	for k, c := range cmds {
		if !noScript(c.Err()) {
			continue
		}
		args := c.Args()
		src, ok := p.scripts[asString(args[1])]
		if !ok {
			continue
		}
		eval := redis.NewCmd(context.Background(), append([]any{"eval", src}, args[2:]...)...)
		at[k].op.cmds[at[k].i] = eval
		again = append(again, eval)
	}
	if len(again) > 0 {
		p.roundTrips.Add(1)
		p.commands.Add(uint64(len(again)))
		p.pipelined(again)
	}
}

func (p *pipeline) pipelined(cmds []redis.Cmder) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	pipe := p.rdb.Pipeline()
	_ = pipe.BatchProcess(ctx, cmds...)
	_, _ = pipe.Exec(ctx) // every command carries its own error
}

// answer hands o to its waiter, or to onAbandoned if the waiter is gone.
func (p *pipeline) answer(o *op) {
	switch {
	case o.noWait:
		for _, c := range o.cmds {
			if err := c.Err(); err != nil {
				p.log.Warn("rate limit refund failed; the window keeps the request spent", slog.Any("error", err))
				break
			}
		}
		p.release(o)
	case o.state.CompareAndSwap(opQueued, opDone):
		o.ready <- struct{}{}
	default: // abandoned
		p.onAbandoned(o)
		p.release(o)
	}
}

// fail answers every op of list with err, unsent.
func (p *pipeline) fail(list *op, err error) {
	for o := list; o != nil; {
		next := o.next
		for _, c := range o.cmds {
			c.SetErr(err)
		}
		if o.noWait || !o.state.CompareAndSwap(opQueued, opDone) {
			p.release(o)
		} else {
			o.ready <- struct{}{}
		}
		o = next
	}
}

func noScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}
