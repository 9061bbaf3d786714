package bus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
)

// contender runs RunWithLease in the background and records what happens.
type contender struct {
	name    string
	cancel  context.CancelFunc
	started chan struct{} // receives once per run of fn
	stopped chan error    // fn's context error cause when it ended
	done    chan struct{} // closed when RunWithLease returned
	result  error         // RunWithLease's result, set before done closes
	states  []bool        // onState calls, guarded by mu
	mu      sync.Mutex
	active  *atomic.Int32 // shared between contenders
	maxSeen *atomic.Int32 // highest number of concurrent runners observed
}

func startContender(t *testing.T, kv jetstream.KeyValue, key, name string, ttl time.Duration, active, maxSeen *atomic.Int32) *contender {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	c := &contender{
		name: name, cancel: cancel,
		started: make(chan struct{}, 10), stopped: make(chan error, 10), done: make(chan struct{}),
		active: active, maxSeen: maxSeen,
	}
	fn := func(ctx context.Context) error {
		n := c.active.Add(1)
		for {
			m := c.maxSeen.Load()
			if n <= m || c.maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		c.started <- struct{}{}
		<-ctx.Done()
		c.active.Add(-1)
		c.stopped <- context.Cause(ctx)
		return ctx.Err()
	}
	onState := func(held bool) {
		c.mu.Lock()
		c.states = append(c.states, held)
		c.mu.Unlock()
	}
	go func() {
		defer close(c.done)
		c.result = bus.RunWithLease(ctx, kv, key, name, ttl, fn, onState)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: RunWithLease did not return after cancel", name)
		}
	})
	return c
}

func waitStarted(t *testing.T, c *contender, within time.Duration) {
	t.Helper()
	select {
	case <-c.started:
	case <-time.After(within):
		t.Fatalf("%s did not start within %s", c.name, within)
	}
}

// firstStarted waits for one of cs to start and returns it.
func firstStarted(t *testing.T, within time.Duration, cs ...*contender) *contender {
	t.Helper()
	timeout := time.After(within)
	for {
		for _, c := range cs {
			select {
			case <-c.started:
				return c
			default:
			}
		}
		select {
		case <-timeout:
			t.Fatalf("no contender started within %s", within)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestRunWithLeaseRunsOneHolderAtATimeAndHandsOverOnCancel(t *testing.T) {
	url, _, _ := bustest.StartServer(t)
	open := func() *bus.Bus {
		b, err := bus.Open(boundedCtx(t, 10*time.Second), bus.Options{URL: url, LeaseTTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close(context.Background()) })
		return b
	}
	b1, b2 := open(), open()
	r1 := bustest.ProvisionRegion(t, b1, "eu")
	r2 := bustest.ProvisionRegion(t, b2, "eu")
	key := bus.LeaseKey("telegram", "123456:bot")

	var active, maxSeen atomic.Int32
	a := startContender(t, r1.Leases, key, "a", 3*time.Second, &active, &maxSeen)
	b := startContender(t, r2.Leases, key, "b", 3*time.Second, &active, &maxSeen)

	holder := firstStarted(t, 5*time.Second, a, b)
	standby := a
	if holder == a {
		standby = b
	}
	// The standby keeps waiting while the holder renews (every ttl/3 = 1s).
	select {
	case <-standby.started:
		t.Fatalf("%s started while %s held the lease", standby.name, holder.name)
	case <-time.After(1500 * time.Millisecond):
	}

	e, err := r1.Leases.Get(boundedCtx(t, 5*time.Second), key)
	if err != nil || string(e.Value()) != holder.name {
		t.Fatalf("lease key holds %v (%v), want owner %s", e, err, holder.name)
	}

	start := time.Now()
	holder.cancel()
	waitStarted(t, standby, 5*time.Second)
	// Released on cancel: the standby must not wait out the TTL.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("hand-over after release took %s", d)
	}
	select {
	case <-holder.done:
		if holder.result != nil {
			t.Errorf("RunWithLease after cancel = %v, want nil", holder.result)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled holder did not return")
	}
	if got := maxSeen.Load(); got != 1 {
		t.Errorf("%d runners at once, want 1", got)
	}
	holder.mu.Lock()
	defer holder.mu.Unlock()
	if len(holder.states) != 2 || !holder.states[0] || holder.states[1] {
		t.Errorf("holder onState calls = %v, want [true false]", holder.states)
	}
}

func TestRunWithLeaseTakesOverFromAHolderThatStoppedRenewing(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) { o.LeaseTTL = time.Second })
	r := bustest.ProvisionRegion(t, b, "eu")
	key := bus.LeaseKey("whatsapp", "wa-eu")

	// A crashed instance: it took the key and never renews it.
	if _, err := r.Leases.Create(boundedCtx(t, 5*time.Second), key, []byte("crashed")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var active, maxSeen atomic.Int32
	c := startContender(t, r.Leases, key, "survivor", time.Second, &active, &maxSeen)
	waitStarted(t, c, 10*time.Second)
	d := time.Since(start)
	if d < 500*time.Millisecond {
		t.Errorf("took over after %s, before the crashed holder's TTL could expire", d)
	}
	t.Logf("took over after %s (bucket TTL 1s)", d)
}

// TestAcquireLeaseTakesBackALeaseStillInItsOwnName: an owner whose
// renewal failed (NATS was unreachable) gave the lease up while the key
// still names it; taking it back does not wait for the TTL, and nobody
// else can take it meanwhile.
func TestAcquireLeaseTakesBackALeaseStillInItsOwnName(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) { o.LeaseTTL = time.Hour })
	r := bustest.ProvisionRegion(t, b, "eu")
	ctx := boundedCtx(t, 5*time.Second)
	if _, err := bus.AcquireLease(ctx, r.Leases, "k", "me", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.AcquireLease(ctx, r.Leases, "k", "someone-else", time.Hour); !errors.Is(err, bus.ErrLeaseHeld) {
		t.Fatalf("another owner: %v, want ErrLeaseHeld", err)
	}
	l, err := bus.AcquireLease(ctx, r.Leases, "k", "me", time.Hour)
	if err != nil {
		t.Fatalf("the same owner again: %v", err)
	}
	if err := l.Renew(ctx); err != nil {
		t.Errorf("renewing the lease taken back: %v", err)
	}
}

func TestRunWithLeaseStopsAHolderThatCannotRenew(t *testing.T) {
	url, _, _ := bustest.StartServer(t)
	open := func() *bus.Bus {
		b, err := bus.Open(boundedCtx(t, 10*time.Second), bus.Options{URL: url, LeaseTTL: time.Second, ReconnectWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close(context.Background()) })
		return b
	}
	b1, b2 := open(), open()
	r1 := bustest.ProvisionRegion(t, b1, "eu")
	r2 := bustest.ProvisionRegion(t, b2, "eu")
	key := bus.LeaseKey("whatsapp", "wa-eu")

	var active, maxSeen atomic.Int32
	a := startContender(t, r1.Leases, key, "a", time.Second, &active, &maxSeen)
	waitStarted(t, a, 5*time.Second)
	standby := startContender(t, r2.Leases, key, "b", time.Second, &active, &maxSeen)

	// a's connection dies: it can neither renew nor release.
	cut := time.Now()
	b1.Conn().Close()
	select {
	case cause := <-a.stopped:
		if !errors.Is(cause, bus.ErrLeaseLost) {
			t.Errorf("holder's context cause = %v, want ErrLeaseLost", cause)
		}
		if d := time.Since(cut); d > time.Second {
			t.Errorf("holder noticed the loss after %s, later than the TTL", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("holder kept running without renewing")
	}
	waitStarted(t, standby, 10*time.Second)
	if got := maxSeen.Load(); got != 1 {
		t.Errorf("%d runners at once, want 1", got)
	}
}

func TestRunWithLeaseReturnsTheFunctionsError(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) { o.LeaseTTL = 3 * time.Second })
	r := bustest.ProvisionRegion(t, b, "eu")
	key := bus.LeaseKey("telegram", "bot")
	boom := errors.New("bad credentials")
	err := bus.RunWithLease(boundedCtx(t, 10*time.Second), r.Leases, key, "me", 0, func(context.Context) error { return boom }, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("RunWithLease = %v, want %v", err, boom)
	}
	// The lease was released on the way out.
	if _, err := r.Leases.Get(boundedCtx(t, 5*time.Second), key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("lease key after return: %v, want deleted", err)
	}
}

func TestRunWithLeaseReacquiresAfterTheFunctionReturnsNil(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) { o.LeaseTTL = 3 * time.Second })
	r := bustest.ProvisionRegion(t, b, "eu")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var runs atomic.Int32
	err := bus.RunWithLease(ctx, r.Leases, bus.LeaseKey("x"), "me", 0, func(context.Context) error {
		if runs.Add(1) == 3 {
			cancel()
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatalf("RunWithLease = %v, want nil once ctx ends", err)
	}
	if got := runs.Load(); got != 3 {
		t.Errorf("fn ran %d times, want 3", got)
	}
}

func TestRunWithLeaseRejectsABucketWithoutTTL(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, "eu")
	err := bus.RunWithLease(boundedCtx(t, 10*time.Second), r.Directory, "k", "me", time.Second,
		func(context.Context) error { t.Error("fn ran on a bucket without TTL"); return nil }, nil)
	if err == nil {
		t.Fatal("RunWithLease on a bucket without TTL succeeded")
	}
}
