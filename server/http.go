package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/store"
)

// httpMux serves the HTTP listener: health, readiness, metrics, the
// HTTP authorization endpoint, the console and, with an admin token, the
// admin API.
func (s *Server) httpMux(p *parts, db store.DB) (*http.ServeMux, error) {
	cfg := s.cfg
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := readiness(p.cache, cfg.Cache.StaleReady)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{Registry: p.registry}))
	mux.Handle(extauthz.HTTPPrefix, p.authz.HTTPHandler())
	mux.Handle(extauthz.HTTPPrefix+"/", p.authz.HTTPHandler())
	tokens, err := cfg.AdminTokens()
	if err != nil {
		return nil, err
	}
	svc, err := s.newAdmin(db, p.changed)
	if err != nil {
		return nil, err
	}
	if err := s.mountConsole(mux, svc, tokens); err != nil {
		return nil, err
	}
	if tokens.Empty() {
		s.log.Info("admin API off: neither admin.token (KEYGATE_ADMIN_TOKEN) nor admin.tokens is set")
		return mux, nil
	}
	ah, err := admin.NewHandler(svc, tokens, s.log)
	if err != nil {
		return nil, err
	}
	mux.Handle("/admin/v1/", ah)
	return mux, nil
}

// readiness says whether this replica should get traffic: its cache is
// loaded and its key database reachable (or staleReady allows serving
// cached keys without it). The text says why.
func readiness(kc *cache.Cache, staleReady bool) (bool, string) {
	switch {
	case !kc.Ready():
		return false, "not ready: loading the key cache (is the key database reachable?)"
	case !kc.DBUp() && staleReady:
		return true, "ready: key database unreachable, serving cached keys (unknown keys get 503)"
	case !kc.DBUp():
		return false, "not ready: key database unreachable (cached keys are still served; set cache.stale_ready to stay ready)"
	}
	return true, "ready"
}

// followReadiness keeps gRPC health in step with /readyz.
func followReadiness(ctx context.Context, kc *cache.Cache, staleReady bool, hs *health.Server) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_NOT_SERVING
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ok, _ := readiness(kc, staleReady); ok {
			st = healthpb.HealthCheckResponse_SERVING
		}
		if st != last {
			for _, name := range []string{"", authzService} {
				hs.SetServingStatus(name, st)
			}
			last = st
		}
	}
}
