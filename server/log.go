package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/duration"
)

// NewLogger returns the process logger: one JSON object a line (or text,
// if configured) to w at the configured level, with durations written as
// a person reads them ("1.718ms", "2d") rather than in nanoseconds. It
// also routes the Redis client's own messages into it, which go-redis
// would otherwise print as plain text lines into the same stream.
func NewLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDuration}
	var log *slog.Logger
	if c.Format == "text" {
		log = slog.New(slog.NewTextHandler(w, opts))
	} else {
		log = slog.New(slog.NewJSONHandler(w, opts))
	}
	redis.SetLogger(redisLogger{log.With(slog.String("component", "redis"))})
	return log
}

func readableDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(duration.Format(a.Value.Duration()))
	}
	return a
}

// redisLogger is go-redis's logging interface over slog, at debug level:
// go-redis repeats a connection failure every time its pool dials (twice
// a second while Redis is down), and the limiter already logs once, at
// warn, when Redis goes down and when it is back.
type redisLogger struct{ log *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Log(ctx, slog.LevelDebug, fmt.Sprintf(format, v...))
	}
}
