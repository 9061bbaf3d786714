package fakechat

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

func TestDescriptor(t *testing.T) {
	if Descriptor.Platform != "fakechat" || Descriptor.Name == "" || Descriptor.New == nil || Descriptor.Validate == nil || Descriptor.Sample == "" {
		t.Fatalf("descriptor %+v", Descriptor)
	}
}

// noNetwork fails every request: New must not make one.
type noNetwork struct{ t *testing.T }

func (n noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	n.t.Errorf("New made a request to %s", r.URL)
	return nil, errors.New("no network")
}

func TestNewDoesNoIO(t *testing.T) {
	deps := connectors.Deps{HTTPClient: &http.Client{Transport: noNetwork{t}}}
	c, err := Descriptor.New(deps, yamlSettings(validSettings))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Health().State; got != normalize.StateStarting {
		t.Fatalf("health %s before Run, want starting", got)
	}
}

func TestRunReportsRunningAndReturnsWhenCancelled(t *testing.T) {
	e := newEnv(t, validSettings)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.c.Run(ctx) }()
	wait.For(t, 10*time.Second, "running", func() bool { return e.c.Health().State == normalize.StateRunning })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := e.c.Health().State; got != normalize.StateStopped {
		t.Fatalf("health %s after Run, want stopped", got)
	}
	want := []normalize.State{normalize.StateRunning, normalize.StateStopped} // it was starting already
	if got := e.health.all(); !slices.Equal(got, want) {
		t.Fatalf("health changes %v, want %v", got, want)
	}
}

// A webhook connector has no traffic of its own to prove storage is back:
// Run probes it and reports running again.
func TestRunRecoversFromAStorageOutageByProbing(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a storage probe")
	}
	e := newEnv(t, validSettings)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait.For(t, 10*time.Second, "running", func() bool { return e.c.Health().State == normalize.StateRunning })

	e.pub.setDown(true)
	if err := e.c.inbound.Store(t.Context(), []kit.Update{one(testEvent(t))}); !errors.Is(err, connectors.ErrNotDurable) {
		t.Fatalf("Store = %v, want not durable", err)
	}
	if got := e.c.Health().State; got != normalize.StateDegraded {
		t.Fatalf("health %s, want degraded", got)
	}
	e.pub.setDown(false)
	wait.For(t, 10*time.Second, "running after a probe", func() bool { return e.c.Health().State == normalize.StateRunning })
}

// testEvent is one valid event of the connector.
func testEvent(t *testing.T) *normalize.Event {
	t.Helper()
	updates, err := parseBody(inTestContext, []byte(`{"object":"fakechat","entry":[{"account":"1001","time":1,"events":[{"type":"message","ts":1795167000000,"from":{"id":"c1"},"id":"fm_in_1","text":"hi"}]}]}`))
	if err != nil || len(updates) != 1 || len(updates[0].Events) != 1 {
		t.Fatalf("%v %+v", err, updates)
	}
	return updates[0].Events[0]
}
