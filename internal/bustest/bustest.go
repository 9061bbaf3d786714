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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// Cluster is a JetStream cluster of NATS servers on 127.0.0.1, all in this
// process, for tests of what a clustered deployment must survive.
type Cluster struct {
	t       testing.TB
	mu      sync.Mutex
	servers []*server.Server
	// URL lists every server, as a client's server list.
	URL string
}

// StartCluster runs n clustered JetStream servers (each with its own store
// in a t.TempDir()), waits until they form a cluster with a meta leader,
// and shuts them down when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("bustest: free port: %v", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	clientPorts, routePorts := make([]int, n), make([]int, n)
	for i := range n {
		clientPorts[i], routePorts[i] = free(), free()
	}
	c := &Cluster{t: t}
	var urls []string
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[j]))
			}
		}
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "bustest", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("bustest: new nats server: %v", err)
		}
		go s.Start()
		c.servers = append(c.servers, s)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, s := range c.servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	for _, s := range c.servers {
		if !s.ReadyForConnections(readyTimeout) {
			t.Fatalf("bustest: cluster server not ready after %s", readyTimeout)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, s := range c.servers {
			if !s.JetStreamIsCurrent() || s.JetStreamIsClustered() && !s.JetStreamEnabled() {
				ok = false
			}
		}
		if ok && c.onlinePeers() == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bustest: the cluster's JetStream meta leader did not see all %d peers online within 30s", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.URL = strings.Join(urls, ",")
	c.warmUp(n)
	return c
}

// warmUp places a stream with n replicas until the cluster accepts it: the
// meta leader may still refuse placement ("peer offline") for a moment
// after it first saw every peer.
func (c *Cluster) warmUp(n int) {
	t := c.t
	nc, err := nats.Connect(c.URL)
	if err != nil {
		t.Fatalf("bustest: connecting to the cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BUSTEST_WARMUP", Subjects: []string{"bustest.warmup"}, Replicas: n})
		if err == nil {
			err = js.DeleteStream(ctx, "BUSTEST_WARMUP")
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bustest: the cluster does not place an R%d stream within 30s: %v", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// onlinePeers is how many peers the meta leader sees online with
// JetStream and current statistics (0 without a leader): until all are,
// placing an R3 stream can fail with "peer offline".
func (c *Cluster) onlinePeers() int {
	for _, s := range c.servers {
		if s != nil && s.JetStreamIsLeader() {
			return len(s.JetStreamClusterPeers())
		}
	}
	return 0
}

// Kill shuts down the server named name ("n1" …), as a crash would.
func (c *Cluster) Kill(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.servers {
		if s != nil && s.Name() == name {
			s.Shutdown()
			s.WaitForShutdown()
			c.servers[i] = nil
			return
		}
	}
	c.t.Fatalf("bustest: no running server %q", name)
}
