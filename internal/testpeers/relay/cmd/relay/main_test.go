package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/medic-sidecar/medic/internal/relayapi"
)

// lockedBuffer is written by run and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestRunServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-interval", "5ms"}, out) }()
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == ""; {
		if a, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "listening "); ok {
			addr = a
		} else if time.Now().After(deadline) {
			t.Fatal("no listening line")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := relayapi.NewLogServiceClient(cc).WatchAlerts(ctx, &relayapi.RequestMessage{Filter: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBadFlag(t *testing.T) {
	if err := run(context.Background(), []string{"-nope"}, &bytes.Buffer{}); err == nil {
		t.Fatal("want an error")
	}
}
