# Keygate's build and test entry points. `make test` is what CI runs.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 30s
PKGS        := ./...
# vtprotobuf: go-control-plane's generated encoders for the CheckResponse
# (extauthz/codec.go); without the tag Keygate works the same, slower.
TAGS        ?= vtprotobuf

.PHONY: all build test test-short vet lint fuzz fuzz-ci bench loadtest run

all: build

build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -o bin/keygate ./cmd/keygate

## vet: formatting, go vet and staticcheck.
vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet -tags $(TAGS) $(PKGS)
	$(GO) run $(STATICCHECK) -tags $(TAGS) $(PKGS)

## test: vet, then every test with the race detector against the real
## PostgreSQL and Redis (KEYGATE_TEST_DATABASE_URL, KEYGATE_TEST_REDIS_URL),
## nginx, Caddy, helm and kubectl; `bash .ci/run` installs and starts what
## is missing first.
test: vet
	$(GO) test -race -count=1 -timeout 15m -tags $(TAGS) $(PKGS)
	@# The response path once more without the tag: the reflection encoder.
	$(GO) test -race -count=1 ./extauthz/
	@# Every benchmark once, so that none rots between performance runs.
	$(GO) test -tags $(TAGS) -count=1 -run '^$$' -bench . -benchtime 1x ./extauthz/ ./limits/ ./keys/ ./policy/ ./cache/ ./cmd/keygate-bench/
	$(MAKE) fuzz-ci

## test-short: the fast tier for quick edits: every test that needs no
## service or tool (PostgreSQL, Redis, nginx, Caddy, helm, kubectl); those
## say they were left out. Not a substitute for `make test`.
test-short:
	$(GO) test -short -count=1 -tags $(TAGS) $(PKGS)

## fuzz-ci: each fuzz target briefly, as CI does.
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

## fuzz: each fuzz target for FUZZTIME. Go 1.26's fuzzer can fail a target
## with a bare "context deadline exceeded" as -fuzztime runs out, having
## found nothing (golang/go#75804, fixed in Go 1.27): such a run, and only
## such a run (no failing input written, no panic), is tried once more.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    for try in 1 2; do \
	      if $(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg > $$log 2>&1; then break; fi; \
	      if [ $$try = 1 ] && grep -q 'context deadline exceeded' $$log && ! grep -qE 'Failing input written|panic:|_test.go:[0-9]+:' $$log; then \
	        echo "fuzz $$t: the fuzzer's own deadline race (golang/go#75804), nothing found: once more"; continue; \
	      fi; \
	      cat $$log; exit 1; \
	    done; \
	  done; \
	done

## bench: the Go benchmarks of the hot path.
bench:
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchmem ./extauthz/ ./limits/ ./keys/ ./policy/ ./cache/

## loadtest: the load harness: a no-op ext_authz server, Keygate with
## in-process limits and Keygate with Redis limits under the same gRPC load.
loadtest:
	$(GO) run -tags $(TAGS) ./cmd/keygate-bench $(ARGS)

## run: the server on the embedded defaults.
run:
	$(GO) run -tags $(TAGS) ./cmd/keygate serve
