// Package bustest runs real NATS JetStream servers inside tests: an embedded
// [bus.Bus] in a temporary directory, or a TCP server on 127.0.0.1 that a test
// can stop and restart on the same port and store to simulate an outage.
// Everything started is stopped through t.Cleanup; every wait is bounded.
package bustest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/parley-gateway/parley/internal/bus"
)

// readyTimeout bounds server start-up and shutdown in tests.
const readyTimeout = 10 * time.Second

// Start opens a Bus on a fresh embedded JetStream server (URL "", DataDir a
// t.TempDir(), SyncAlways false for speed) and closes it when the test ends.
// opts adjust the options before Open.
func Start(t testing.TB, opts ...func(*bus.Options)) *bus.Bus {
	t.Helper()
	o := bus.Options{
		DataDir: t.TempDir(),
		Name:    "bustest",
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	b, err := bus.Open(ctx, o)
	if err != nil {
		t.Fatalf("bustest: opening bus: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bustest: closing bus: %v", err)
		}
	})
	return b
}

// ProvisionRegion provisions region on b, failing the test on error.
func ProvisionRegion(t testing.TB, b *bus.Bus, region string) *bus.Region {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := b.Provision(ctx, region)
	if err != nil {
		t.Fatalf("bustest: provisioning region %s: %v", region, err)
	}
	return r
}

// StartServer runs a NATS server with JetStream on 127.0.0.1 (a random port,
// the store in a t.TempDir()) and returns its URL. stop shuts it down (an
// outage: clients start reconnecting); restart starts it again on the same
// port with the same store. Both are idempotent, and whatever runs at the end
// of the test is shut down.
func StartServer(t testing.TB) (url string, stop func(), restart func()) {
	t.Helper()
	storeDir := t.TempDir()
	var mu sync.Mutex
	var srv *server.Server
	port := server.RANDOM_PORT

	start := func() {
		opts := &server.Options{
			ServerName: "bustest",
			Host:       "127.0.0.1",
			Port:       port,
			JetStream:  true,
			StoreDir:   storeDir,
			NoLog:      true,
			NoSigs:     true,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("bustest: new nats server: %v", err)
		}
		go s.Start()
		if !s.ReadyForConnections(readyTimeout) {
			s.Shutdown()
			t.Fatalf("bustest: nats server not ready after %s", readyTimeout)
		}
		srv = s
		if port == server.RANDOM_PORT {
			_, p, err := net.SplitHostPort(s.Addr().String())
			if err != nil {
				t.Fatalf("bustest: nats server address: %v", err)
			}
			port, _ = strconv.Atoi(p)
		}
	}
	shutdown := func() {
		if srv == nil {
			return
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		srv = nil
	}

	mu.Lock()
	start()
	mu.Unlock()
	url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		shutdown()
	})
	stop = func() {
		mu.Lock()
		defer mu.Unlock()
		shutdown()
	}
	restart = func() {
		mu.Lock()
		defer mu.Unlock()
		if srv == nil {
			start()
		}
	}
	return url, stop, restart
}
