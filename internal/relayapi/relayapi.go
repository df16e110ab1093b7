// Package relayapi is medic's wire-compatible declaration of KubeArmor's
// feeder.LogService (feeder.proto), generated with protoc-gen-go and
// protoc-gen-go-grpc, plus the stream and filter rules the relay enforces.
//
// Regenerate with `scripts/check-generated.sh -w` (it installs the pinned
// plugins); CI runs the same script without -w to fail on drift.
package relayapi

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative feeder.proto

import "slices"

// Stream names one of LogService's server streams.
type Stream string

// The streams LogService serves.
const (
	StreamAlerts   Stream = "alerts"
	StreamLogs     Stream = "logs"
	StreamMessages Stream = "messages"
)

// Streams lists the stream names in config order.
var Streams = []Stream{StreamAlerts, StreamLogs, StreamMessages}

// Method returns the full gRPC method name of s, e.g. "/feeder.LogService/WatchAlerts".
func (s Stream) Method() string {
	switch s {
	case StreamAlerts:
		return LogService_WatchAlerts_FullMethodName
	case StreamLogs:
		return LogService_WatchLogs_FullMethodName
	case StreamMessages:
		return LogService_WatchMessages_FullMethodName
	}
	return ""
}

// DefaultFilter is the filter medic sends when none is configured: the
// narrowest one the relay accepts for the stream.
func (s Stream) DefaultFilter() string {
	switch s {
	case StreamAlerts:
		return "policy"
	case StreamLogs:
		return "system"
	}
	return "all"
}

// Filters lists the filters the relay accepts for s; nil means any value
// is accepted (WatchMessages).
func (s Stream) Filters() []string {
	switch s {
	case StreamAlerts:
		return []string{"all", "policy"}
	case StreamLogs:
		return []string{"all", "system"}
	}
	return nil
}

// AcceptsFilter reports whether the relay keeps a Watch on s open for
// filter. A rejected filter (the empty string included) ends the stream at
// once with status OK: the client sees a clean io.EOF.
func (s Stream) AcceptsFilter(filter string) bool {
	switch s {
	case StreamAlerts, StreamLogs:
		return slices.Contains(s.Filters(), filter)
	case StreamMessages:
		return true
	}
	return false
}
