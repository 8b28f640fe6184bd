package server

import (
	"context"
	"log/slog"

	"github.com/keygate/keygate/tracing"
)

// newTracing reads the OTEL_* environment: traces are off unless it
// names an exporter endpoint.
func newTracing(log *slog.Logger) (*tracing.Tracing, error) {
	return tracing.New(tracing.Config{Version: ReadBuildInfo().Version}, log)
}

// startTracing starts the exporter, when traces are on, and says so.
func (s *Server) startTracing(ctx context.Context) error {
	if err := s.tracing.Start(ctx); err != nil {
		return err
	}
	if s.tracing.Enabled() {
		s.log.Info("tracing: exporting spans over OTLP", slog.String("protocol", s.tracing.Protocol()))
	}
	return nil
}

// flushTraces exports the spans still queued, within shutdown_timeout; a
// second call does nothing.
func (s *Server) flushTraces(ctx context.Context) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.tracing.Shutdown(fctx); err != nil {
		s.log.Warn("tracing: spans lost on shutdown", slog.Any("error", err))
	}
}
