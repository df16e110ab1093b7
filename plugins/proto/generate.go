// Package pluginpb is the generated gRPC code of the remediation plugin
// protocol (remediation.proto). Regenerate with scripts/check-generated-plugins.sh -w
// (it installs the pinned protoc plugins and runs go generate).
package pluginpb

//go:generate protoc -I . --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. remediation.proto
