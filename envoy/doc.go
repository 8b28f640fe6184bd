// Package envoy holds Keygate's Envoy front-proxy configuration
// (envoy.yaml). It has no Go code of its own: its tests decode every YAML
// file here strictly into go-control-plane's Bootstrap, run the
// protoc-gen-validate rules over it and every typed config inside it, and
// check the choices envoy/README.md explains, so that a typo or a drifted
// field fails `go test` rather than Envoy at start.
package envoy
