package limits

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// The Redis side of GCRA is redis_rate's: its script, its arguments, its
// arithmetic. The script is read from redis_rate itself at start (by
// asking its Limiter to run once against a client that only records), so
// that the Limiter's commands can be queued with other checks' instead of
// each waiting for its own answer, as redis_rate.Limiter.AllowN does.

// gcraSrc is redis_rate's AllowN script, gcraSHA its SHA-1; New fails
// with gcraErr if they could not be read.
var gcraSrc, gcraSHA, gcraErr = recordRedisRate()

// errRecorded stops redis_rate once its script is recorded.
var errRecorded = errors.New("recorded")

// recordRedisRate runs redis_rate's AllowN against a recorder: AllowN asks
// EVALSHA first, and after NOSCRIPT sends EVAL with the source.
func recordRedisRate() (src, sha string, err error) {
	rec := &scriptRecorder{}
	_, err = redis_rate.NewLimiter(rec).AllowN(context.Background(), "k", redis_rate.PerSecond(1), 1)
	if !errors.Is(err, errRecorded) || rec.src == "" || redis.NewScript(rec.src).Hash() != rec.sha {
		return "", "", fmt.Errorf("limits: reading redis_rate's GCRA script: got %v, source of %d bytes, SHA-1 %q", err, len(rec.src), rec.sha)
	}
	return rec.src, rec.sha, nil
}

// scriptRecorder is a redis_rate client that runs nothing: it keeps what
// AllowN would send.
type scriptRecorder struct {
	src, sha string
	keys     []string
	args     []any
}

func (r *scriptRecorder) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	r.sha, r.keys, r.args = sha, keys, args
	c := redis.NewCmd(ctx)
	c.SetErr(redis.ErrNoScript)
	return c
}

func (r *scriptRecorder) Eval(ctx context.Context, src string, _ []string, _ ...any) *redis.Cmd {
	r.src = src
	c := redis.NewCmd(ctx)
	c.SetErr(errRecorded)
	return c
}

func (r *scriptRecorder) EvalRO(ctx context.Context, src string, keys []string, args ...any) *redis.Cmd {
	return r.Eval(ctx, src, keys, args...)
}

func (r *scriptRecorder) EvalShaRO(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	return r.EvalSha(ctx, sha, keys, args...)
}

func (r *scriptRecorder) ScriptExists(ctx context.Context, _ ...string) *redis.BoolSliceCmd {
	c := redis.NewBoolSliceCmd(ctx)
	c.SetErr(errRecorded)
	return c
}

func (r *scriptRecorder) ScriptLoad(ctx context.Context, _ string) *redis.StringCmd {
	c := redis.NewStringCmd(ctx)
	c.SetErr(errRecorded)
	return c
}

func (r *scriptRecorder) Del(ctx context.Context, _ ...string) *redis.IntCmd {
	c := redis.NewIntCmd(ctx)
	c.SetErr(errRecorded)
	return c
}

// gcraArgs are a window's arguments to redis_rate's script, as AllowN
// passes them (burst, rate, period in float seconds), held as interface
// values once: each would otherwise be an allocation per check.
type gcraArgs struct{ burst, rate, period any }

func newGCRAArgs(lim redis_rate.Limit) gcraArgs {
	return gcraArgs{lim.Burst, lim.Rate, lim.Period.Seconds()}
}

var (
	evalshaArg any = "evalsha"
	gcraSHAArg any = gcraSHA
)

// gcraCmd is the command redis_rate's AllowN(key, lim, n) sends.
func gcraCmd(key string, a *gcraArgs, n int) *redis.Cmd {
	return redis.NewCmd(context.Background(), evalshaArg, gcraSHAArg, 1, "rate:"+key, a.burst, a.rate, a.period, n)
}

// gcraAnswer reads a GCRA command's answer as redis_rate's AllowN does
// (allowed and remaining as integers, retry and reset after as float
// seconds in strings, -1 for none), or returns the command's error.
func gcraAnswer(c redis.Cmder) (redis_rate.Result, error) {
	if err := c.Err(); err != nil {
		return redis_rate.Result{}, err
	}
	r, ok := gcraReply(c)
	if !ok {
		return redis_rate.Result{}, fmt.Errorf("limits: unexpected GCRA answer %v", c)
	}
	return r, nil
}

// gcraReply reads the answer Redis gave a GCRA command, if one was read,
// whatever the command's error: go-redis stamps a pipeline's transport
// error (a timeout halfway through the replies) on every command of it,
// answered or not, and leaves the answers it did read in place. What
// Redis spent is known by them.
func gcraReply(c redis.Cmder) (redis_rate.Result, bool) {
	cmd, ok := c.(*redis.Cmd)
	if !ok {
		return redis_rate.Result{}, false
	}
	vs, ok := cmd.Val().([]any)
	if !ok || len(vs) != 4 {
		return redis_rate.Result{}, false
	}
	allowed, ok1 := vs[0].(int64)
	remaining, ok2 := vs[1].(int64)
	retry, ok3 := vs[2].(string)
	reset, ok4 := vs[3].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return redis_rate.Result{}, false
	}
	retryAfter, err1 := strconv.ParseFloat(retry, 64)
	resetAfter, err2 := strconv.ParseFloat(reset, 64)
	if err1 != nil || err2 != nil {
		return redis_rate.Result{}, false
	}
	return redis_rate.Result{Allowed: int(allowed), Remaining: int(remaining), RetryAfter: seconds(retryAfter), ResetAfter: seconds(resetAfter)}, true
}

// seconds is redis_rate's float seconds as a Duration (-1 stays -1).
func seconds(f float64) time.Duration {
	if f == -1 {
		return -1
	}
	return time.Duration(f * float64(time.Second))
}

// refundScript gives requests back to a redis_rate GCRA key, in
// redis_rate's own units (seconds since 2017-01-01 as a float). It differs
// from AllowN(-n) in one case: when the refunded TAT is not in the future
// (the window was full before the request), AllowN writes nothing and the
// request stays spent; this script deletes the key, which is what a full
// window is. KEYS[1] is redis_rate's key ("rate:" + ours); ARGV: period in
// seconds, rate, and how many requests to give back.
const refundScript = `
redis.replicate_commands()
local tat = tonumber(redis.call("GET", KEYS[1]))
if not tat then
  return 0
end
local now = redis.call("TIME")
now = (now[1] - 1483228800) + (now[2] / 1000000)
local new_tat = tat - tonumber(ARGV[3]) * tonumber(ARGV[1]) / tonumber(ARGV[2])
if new_tat > now then
  redis.call("SET", KEYS[1], new_tat, "EX", math.ceil(new_tat - now))
else
  redis.call("DEL", KEYS[1])
end
return 1
`

var refundSHA = redis.NewScript(refundScript).Hash()

// refundCmd gives back what the GCRA command spent, built from its own
// arguments: key, rate, period and count.
func refundCmd(spend redis.Cmder) *redis.Cmd {
	a := spend.Args() // evalsha sha 1 key burst rate period n
	return redis.NewCmd(context.Background(), "evalsha", refundSHA, 1, a[3], a[6], a[5], a[7])
}
