# syntax=docker/dockerfile:1
# Keygate's image: a static binary on distroless, run as a non-root user.
#
#   docker build -t keygate --build-arg VERSION=v0.1.0 .
#   docker run -p 9191:9191 -p 9090:9090 keygate
#
# deploy/dockerfile_test.go checks this file's shape (there is no Docker
# engine where the tests run); the build itself is the Makefile's.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is reused while only source changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -tags vtprotobuf -trimpath -ldflags "-s -w -X github.com/keygate/keygate/server.Version=${VERSION}" -o /keygate ./cmd/keygate

# No shell, no package manager, CA certificates and tzdata only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /keygate /keygate
# The distroless "nonroot" user, numerically, so that Kubernetes can verify
# runAsNonRoot without a passwd lookup.
USER 65532:65532
# gRPC (ext_authz, grpc.health.v1, reflection); HTTP (/healthz, /readyz,
# /metrics, /admin/v1/, /authz).
EXPOSE 9191 9090 9092
ENTRYPOINT ["/keygate"]
CMD ["serve"]
