package main

import (
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/server"
)

func newServeCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:   "serve",
		Short: "run the ext_authz gRPC server and the HTTP listener",
		Long: `Run Keygate: the ext_authz gRPC server Envoy calls (grpc_addr, :9191) and
the HTTP listener (http_addr, :9090) with /authz for forward-auth proxies,
/healthz, /readyz, /metrics and, when admin.token is set, the admin API
under /admin/v1/. Creates the SQLite database and applies migrations if
needed. Logs are JSON lines on stderr.

SIGTERM or SIGINT stops it gracefully: it reports NOT_SERVING, lets
in-flight checks finish (shutdown_timeout), flushes last-used times and
exits 0.`,
		Example: `  keygate serve
  keygate serve --config /etc/keygate/keygate.yaml
  KEYGATE_DATABASE_URL=postgres://keygate@db/keygate KEYGATE_REDIS_URL=redis://redis:6379/0 keygate serve`,
		Args: noArgs,
		Annotations: map[string]string{annExit: `0  stopped by SIGTERM or SIGINT after a graceful shutdown
1  could not start or failed while running (bad config, database unreachable,
   address in use, …): the message says why
2  usage error: unknown flag or argument`},
	}
	cfgPath := configFlag(c, e)
	c.RunE = func(c *cobra.Command, _ []string) error {
		cfg, log, err := loadConfig(cfgPath(), e)
		if err != nil {
			return err
		}
		srv, err := server.New(cfg, log)
		if err != nil {
			return err
		}
		return srv.Run(c.Context())
	}
	return c
}
