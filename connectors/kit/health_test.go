package kit_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

var (
	storageDown    = &kit.Problem{Reason: "events cannot be stored", Action: "check NATS"}
	platformDown   = &kit.Problem{Reason: "the platform is unreachable", Action: "check the network"}
	platformRefuse = &kit.Problem{Reason: "the platform answers 500", Action: "wait"}
)

// newHealth returns a Health timed by a clock the test moves, and the log
// of what it reported.
func newHealth(t *testing.T) (*kit.Health, *healthLog, *clock) {
	t.Helper()
	log, c := &healthLog{}, &clock{now: start}
	return kit.NewHealth(connectors.Deps{Now: c.Now, OnHealth: log.record}), log, c
}

func TestHealthDerivesTheStateInOrderOfPrecedence(t *testing.T) {
	for _, tt := range []struct {
		name       string
		steps      func(h *kit.Health)
		want       normalize.State
		wantReason string
	}{
		{"a connector that has not started is starting", func(*kit.Health) {}, normalize.StateStarting, ""},
		{"a started connector is running", func(h *kit.Health) { h.Started() }, normalize.StateRunning, ""},
		{"a platform problem before the start is degraded", func(h *kit.Health) { h.Platform(platformDown) }, normalize.StateDegraded, platformDown.Reason},
		{"a platform problem makes a running connector degraded", func(h *kit.Health) {
			h.Started()
			h.Platform(platformDown)
		}, normalize.StateDegraded, platformDown.Reason},
		{"a storage problem wins over a platform problem", func(h *kit.Health) {
			h.Started()
			h.Platform(platformDown)
			h.Storage(storageDown)
		}, normalize.StateDegraded, storageDown.Reason},
		{"the platform problem shows again once storage is back", func(h *kit.Health) {
			h.Started()
			h.Storage(storageDown)
			h.Platform(platformDown)
			h.Storage(nil)
		}, normalize.StateDegraded, platformDown.Reason},
		{"a fatal problem wins over everything", func(h *kit.Health) {
			h.Started()
			h.Storage(storageDown)
			h.Platform(platformDown)
			_ = h.Fatal(normalize.StateBadCredentials, "the token is revoked", "set a new token", nil)
		}, normalize.StateBadCredentials, "the token is revoked"},
		{"running again once every problem is cleared", func(h *kit.Health) {
			h.Started()
			h.Storage(storageDown)
			h.Platform(platformDown)
			h.Storage(nil)
			h.Platform(nil)
		}, normalize.StateRunning, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, _, _ := newHealth(t)
			tt.steps(h)
			if got := h.Get(); got.State != tt.want || got.Reason != tt.wantReason {
				t.Errorf("health = %s (%q), want %s (%q)", got.State, got.Reason, tt.want, tt.wantReason)
			}
		})
	}
}

func TestHealthReportsEachChangeOnceInOrder(t *testing.T) {
	h, log, c := newHealth(t)
	if got := h.Get(); got.State != normalize.StateStarting || !got.Since.Equal(start) {
		t.Fatalf("new health = %+v, want starting since %s", got, start)
	}
	step := func(f func()) time.Time {
		c.Advance(time.Second)
		f()
		return c.Now()
	}
	running := step(h.Started)
	step(h.Started) // no change
	degraded := step(func() { h.Platform(platformDown) })
	step(func() { h.Platform(platformDown) }) // no change
	step(func() { h.Platform(platformRefuse) })
	step(func() { h.Storage(storageDown) })
	step(func() { h.Storage(nil) })
	step(func() { h.Storage(nil) }) // no change
	back := step(func() { h.Platform(nil) })

	want := []connectors.Health{
		{State: normalize.StateRunning, Since: running},
		{State: normalize.StateDegraded, Reason: platformDown.Reason, Action: platformDown.Action, Since: degraded},
		// A new reason in the same state keeps Since: the connector has
		// been degraded since then.
		{State: normalize.StateDegraded, Reason: platformRefuse.Reason, Action: platformRefuse.Action, Since: degraded},
		{State: normalize.StateDegraded, Reason: storageDown.Reason, Action: storageDown.Action, Since: degraded},
		{State: normalize.StateDegraded, Reason: platformRefuse.Reason, Action: platformRefuse.Action, Since: degraded},
		{State: normalize.StateRunning, Since: back},
	}
	if got := log.Reports(); !slices.Equal(got, want) {
		t.Errorf("reports =\n %+v\nwant\n %+v", got, want)
	}
	if got := h.Get(); got != want[len(want)-1] {
		t.Errorf("Get = %+v, want the last report %+v", got, want[len(want)-1])
	}
}

func TestHealthBeginResetsEveryProblem(t *testing.T) {
	h, log, _ := newHealth(t)
	h.Started()
	h.Storage(storageDown)
	_ = h.Fatal(normalize.StateLoggedOut, "the device was logged out", "pair again", nil)
	h.Begin()
	if got := h.Get(); got.State != normalize.StateStarting || got.Reason != "" || got.Action != "" {
		t.Errorf("health after Begin = %+v, want starting with no reason", got)
	}
	if h.StorageTrouble() {
		t.Error("StorageTrouble after Begin = true, want the storage problem reset")
	}
	h.Started()
	want := []normalize.State{normalize.StateRunning, normalize.StateDegraded, normalize.StateLoggedOut, normalize.StateStarting, normalize.StateRunning}
	if got := log.States(); !slices.Equal(got, want) {
		t.Errorf("reported states = %v, want %v", got, want)
	}
}

func TestHealthEnd(t *testing.T) {
	for _, tt := range []struct {
		name  string
		steps func(h *kit.Health)
		want  normalize.State
	}{
		{"a running connector reads stopped", func(h *kit.Health) { h.Started() }, normalize.StateStopped},
		{"a degraded connector reads stopped", func(h *kit.Health) {
			h.Started()
			h.Storage(storageDown)
		}, normalize.StateStopped},
		{"a fatal state stays for the operator", func(h *kit.Health) {
			h.Started()
			_ = h.Fatal(normalize.StateBadCredentials, "the token is revoked", "set a new token", nil)
		}, normalize.StateBadCredentials},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, _, _ := newHealth(t)
			tt.steps(h)
			h.End()
			if got := h.Get().State; got != tt.want {
				t.Errorf("health after End = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestHealthFatalReturnsTheOperatorError(t *testing.T) {
	h, _, _ := newHealth(t)
	cause := errors.New("401 Unauthorized")
	err := h.Fatal(normalize.StateBadCredentials, "the token is revoked", "set a new token and reload", cause)
	oe, ok := errors.AsType[*connectors.OperatorError](err)
	if !ok {
		t.Fatalf("Fatal = %v (%T), want a *connectors.OperatorError", err, err)
	}
	want := connectors.OperatorError{State: normalize.StateBadCredentials, Reason: "the token is revoked", Action: "set a new token and reload", Err: cause}
	if *oe != want {
		t.Errorf("OperatorError = %+v, want %+v", *oe, want)
	}
	if got := h.Get(); got.State != want.State || got.Reason != want.Reason || got.Action != want.Action {
		t.Errorf("health = %+v, want the fatal state with its reason and action", got)
	}
}

// The supervisor's OnHealth reads Get; a report must not hold what Get
// needs.
func TestHealthGetFromInsideOnHealthDoesNotDeadlock(t *testing.T) {
	var h *kit.Health
	var seen []connectors.Health
	h = kit.NewHealth(connectors.Deps{OnHealth: func(reported connectors.Health) {
		seen = append(seen, h.Get())
		if got := h.Get(); got != reported {
			t.Errorf("Get inside OnHealth = %+v, want the health being reported %+v", got, reported)
		}
	}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Begin()
		h.Started()
		h.Storage(storageDown)
		h.Storage(nil)
		_ = h.Fatal(normalize.StateLoggedOut, "logged out", "pair again", nil)
		h.End()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("health changes did not return within 5s: Get inside OnHealth deadlocks")
	}
	want := []normalize.State{normalize.StateRunning, normalize.StateDegraded, normalize.StateRunning, normalize.StateLoggedOut}
	got := make([]normalize.State, len(seen))
	for i, s := range seen {
		got[i] = s.State
	}
	if !slices.Equal(got, want) {
		t.Errorf("states read inside OnHealth = %v, want %v", got, want)
	}
}

func TestHealthWatchStorageClearsTheProblemOnceAProbeSucceeds(t *testing.T) {
	t.Parallel()
	h, _, _ := newHealth(t)
	h.Started()
	h.Storage(storageDown)
	pub := &prober{probe: func(context.Context) error { return nil }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.WatchStorage(ctx, pub)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// The first probe comes after StorageProbeInterval.
	wait.For(t, 3*kit.StorageProbeInterval, "the probe to clear the storage problem", func() bool {
		return h.Get().State == normalize.StateRunning
	})
	if pub.Probes() == 0 {
		t.Error("storage problem cleared without a probe")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchStorage did not return within 5s of its context ending")
	}
}

func TestHealthWatchStorageKeepsTheProblemWhileProbesFail(t *testing.T) {
	t.Parallel()
	h, _, _ := newHealth(t)
	h.Started()
	h.Storage(storageDown)
	pub := &prober{probe: func(context.Context) error { return errDown }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.WatchStorage(ctx, pub)
	}()
	t.Cleanup(func() { cancel(); <-done })

	wait.For(t, 3*kit.StorageProbeInterval, "the first probe", func() bool { return pub.Probes() > 0 })
	if got := h.Get().State; got != normalize.StateDegraded {
		t.Errorf("health after a failed probe = %s, want degraded", got)
	}
}

func TestHealthWatchStorageWithoutAProberWaitsForItsContext(t *testing.T) {
	h, _, _ := newHealth(t)
	h.Started()
	h.Storage(storageDown)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.WatchStorage(ctx, &publisher{})
	}()
	select {
	case <-done:
		t.Fatal("WatchStorage returned before its context ended")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchStorage did not return within 5s of its context ending")
	}
	if got := h.Get().State; got != normalize.StateDegraded {
		t.Errorf("health = %s, want degraded: nothing could prove storage is back", got)
	}
}

func TestHealthStaysStoppedAfterEnd(t *testing.T) {
	var log []connectors.Health
	h := kit.NewHealth(connectors.Deps{OnHealth: func(hl connectors.Health) { log = append(log, hl) }})
	h.Begin()
	h.Started()
	h.End()
	h.Platform(&kit.Problem{Reason: "a send failed after Run returned"})
	h.Storage(&kit.Problem{Reason: "a late store failed"})
	if got := h.Get().State; got != normalize.StateStopped {
		t.Errorf("state %s after End and late problems, want stopped", got)
	}
	if n := len(log); n != 2 || log[1].State != normalize.StateStopped {
		t.Errorf("reported %v, want running, then stopped once", log)
	}
	h.Begin() // the next Run starts afresh
	if got := h.Get().State; got != normalize.StateStarting {
		t.Errorf("state %s after Begin, want starting", got)
	}
}
