package store_test

import (
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// The store's appender is what probes append through; the store itself
// does not import the probe package.
var (
	_ probe.Appender        = (*store.Appender)(nil)
	_ probe.CounterAppender = (*store.Appender)(nil)
)
