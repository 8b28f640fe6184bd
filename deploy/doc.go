// Package deploy holds Keygate's deployment artifacts: Kubernetes manifests
// (kustomize/), a Helm chart (helm/keygate/) and Istio configuration
// (istio/). It has no code but the constants below: its tests decode every
// manifest, the kustomize renders and the `helm template` output strictly
// into the Kubernetes and Istio API types, and check them against these
// constants, which in turn are checked against the server.
package deploy

// The parts of the server's contract that the manifests spell out. Each is
// checked against the server by TestServerContract; the Envoy config's
// tests use GRPCPort too.
const (
	// GRPCPort is where Keygate serves ext_authz, grpc.health.v1 and
	// reflection by default (config grpc_addr ":9191"); the container port
	// named "grpc".
	GRPCPort = 9191
	// HTTPPort is where Keygate serves /healthz, /readyz, /metrics, the
	// admin API and /authz by default (config http_addr ":9090"); the
	// container port named "http".
	HTTPPort = 9090
	// PortalPort is where Keygate serves the tenants' API-keys portal
	// (/portal/) and, when enabled, secret scanning's GitHub endpoint by
	// default (config portal.addr ":9092"); the container port named
	// "portal", the one port meant to be routed to from outside the
	// cluster (portal.public_url is where users reach it).
	PortalPort = 9092
	// LivenessPath answers 200 while the process is alive: the liveness
	// probe's path.
	LivenessPath = "/healthz"
	// ReadinessPath answers 200 once the key cache is loaded and the key
	// database reachable, 503 with the reason otherwise: the readiness
	// probe's path.
	ReadinessPath = "/readyz"
	// MetricsPath is the Prometheus endpoint the scrape annotations name.
	MetricsPath = "/metrics"
	// ConfigPath is where the manifests mount keygate.yaml and what they
	// set KEYGATE_CONFIG to.
	ConfigPath = "/etc/keygate/keygate.yaml"
	// SecretName is the Secret the pods read their secrets from, by the
	// keys in SecretKeys (the Helm chart's secret.name default).
	SecretName = "keygate-secrets"
)

// SecretKeys maps each secret environment variable the server reads to
// its key in the Secret SecretName. database-url and redis-url are
// required; admin-token and database-pepper are read when present;
// oidc-client-secret (console.oidc.client_secret) only where a deployment
// asks for it: the chart when secret.keys.consoleOIDCClientSecret names
// it, since the variable alone, without console.oidc's issuer, client_id
// and roles, stops Keygate from starting.
var SecretKeys = map[string]string{
	"KEYGATE_DATABASE_URL":               "database-url",
	"KEYGATE_REDIS_URL":                  "redis-url",
	"KEYGATE_ADMIN_TOKEN":                "admin-token",
	"KEYGATE_DATABASE_PEPPER":            "database-pepper",
	"KEYGATE_CONSOLE_OIDC_CLIENT_SECRET": "oidc-client-secret",
}
