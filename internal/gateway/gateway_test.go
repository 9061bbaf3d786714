package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/gateway"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

const region = "eu"

type running struct {
	g      *gateway.Gateway
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop cancels the gateway and waits for Run to return; it may be called
// more than once.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("gateway Run did not return after cancel")
		}
	})
}

// start builds and runs a gateway until the test ends.
func start(t *testing.T, o gateway.Options) *running {
	t.Helper()
	g, err := gateway.New(o)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{g: g, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- g.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func options(b *bus.Bus, r *bus.Region, instance string, specs ...gateway.Spec) gateway.Options {
	return gateway.Options{
		Bus:         b,
		Regions:     map[string]*bus.Region{r.Name: r},
		Specs:       specs,
		InstanceID:  instance,
		RestartMin:  20 * time.Millisecond,
		RestartMax:  200 * time.Millisecond,
		StableAfter: 100 * time.Millisecond,
		// Connectors get a directory under it; New creates nothing there.
		DataDir: os.TempDir(),
	}
}

func spec(id, instance string, cfg testConfig) gateway.Spec {
	return gateway.Spec{ID: id, Platform: "testchat", Region: region, Descriptor: descriptor(instance), Settings: settings{cfg}}
}

func statusOf(g *gateway.Gateway, id string) gateway.ConnectorStatus {
	for _, s := range g.States() {
		if s.ID == id {
			return s
		}
	}
	return gateway.ConnectorStatus{}
}

// allEvents decodes every event of a region's stream.
func allEvents(t *testing.T, r *bus.Region) []*normalize.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	info, err := r.Events.Info(ctx)
	if err != nil {
		t.Fatalf("events stream info: %v", err)
	}
	var out []*normalize.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := r.Events.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ev, err := normalize.Decode(m.Data)
		if err != nil {
			t.Fatalf("stored event does not decode: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

// stateEvents returns the connector.state events of connector id, in
// stream order.
func stateEvents(t *testing.T, r *bus.Region, id string) []*normalize.Event {
	t.Helper()
	var out []*normalize.Event
	for _, ev := range allEvents(t, r) {
		if ev.Type == normalize.TypeConnectorState && ev.Data.Connector == id {
			out = append(out, ev)
		}
	}
	return out
}

func hasState(evs []*normalize.Event, state normalize.State, reasonPart string) bool {
	for _, ev := range evs {
		if ev.Data.State.State == state && strings.Contains(ev.Data.State.Reason, reasonPart) {
			return true
		}
	}
	return false
}

func TestNewFailsListingEveryBrokenConnector(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	tests := []struct {
		name  string
		specs []gateway.Spec
		want  []string
	}{
		{
			name: "every failure is named, and no gateway is returned",
			specs: []gateway.Spec{
				spec("ok", "a", testConfig{}),
				spec("bad-token", "a", testConfig{BadNew: "token: required"}),
				{ID: "elsewhere", Platform: "testchat", Region: "us", Descriptor: descriptor("a"), Settings: settings{}},
			},
			want: []string{"connector bad-token: token: required", `connector elsewhere: region "us" is not served`},
		},
		{
			name:  "duplicate ids are refused",
			specs: []gateway.Spec{spec("tc", "a", testConfig{}), spec("tc", "a", testConfig{})},
			want:  []string{"connector tc: duplicate id"},
		},
		{
			name:  "a platform that does not match its descriptor is refused",
			specs: []gateway.Spec{{ID: "x", Platform: "slack", Region: region, Descriptor: descriptor("a"), Settings: settings{}}},
			want:  []string{`connector x: platform "slack" does not match its descriptor "testchat"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := gateway.New(options(b, r, "a", tt.specs...))
			if err == nil {
				t.Fatal("New succeeded")
			}
			if g != nil {
				t.Error("New returned a half gateway along with its error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLookups(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	g, err := gateway.New(options(b, r, "a",
		spec("hook", "a", testConfig{Webhook: true}),
		spec("poll", "a", testConfig{}),
	))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		id          string
		wantWebhook bool
		wantConn    bool
	}{
		{name: "a webhook connector has a handler", id: "hook", wantWebhook: true, wantConn: true},
		{name: "a connector without webhook has none", id: "poll", wantWebhook: false, wantConn: true},
		{name: "an unknown connector has neither", id: "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := g.Webhook(tt.id)
			if ok != tt.wantWebhook || (h != nil) != tt.wantWebhook {
				t.Fatalf("Webhook(%q) = %v, %v", tt.id, h, ok)
			}
			if ok {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/webhooks/"+tt.id, nil))
				if rec.Code != http.StatusNoContent {
					t.Errorf("handler answered %d", rec.Code)
				}
			}
			c, ok := g.Connector(tt.id)
			if ok != tt.wantConn || (c.Connector != nil) != tt.wantConn {
				t.Fatalf("Connector(%q) = %v, %v", tt.id, c, ok)
			}
			if ok && (c.Platform != "testchat" || c.Standby) {
				t.Errorf("Connector(%q) = platform %q, standby %v", tt.id, c.Platform, c.Standby)
			}
			if _, ok := g.MediaFetcher(tt.id); ok != tt.wantConn {
				t.Errorf("MediaFetcher(%q) ok = %v", tt.id, ok)
			}
		})
	}
	// Nothing runs before Run: every connector reads "starting".
	for _, s := range g.States() {
		if s.State != normalize.StateStarting {
			t.Errorf("%s is %s before Run", s.ID, s.State)
		}
	}
	if g.Ready() {
		t.Error("a gateway that never ran is ready")
	}
}

func TestStateEventsFollowHealthChanges(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	p := newProbe()
	met := metrics.New()
	o := options(b, r, "a", spec("tc", "a", testConfig{Probe: p}))
	o.Metrics = met
	rg := start(t, o)

	wait.For(t, 5*time.Second, "the connector to run", func() bool { return statusOf(rg.g, "tc").State == normalize.StateRunning })
	if !rg.g.Ready() {
		t.Error("gateway with a running connector is not ready")
	}
	conn := p.conn("tc@a")
	conn.health.Platform(&kit.Problem{Reason: "platform API unreachable"})
	wait.For(t, 5*time.Second, "the degraded state event", func() bool {
		return hasState(stateEvents(t, r, "tc"), normalize.StateDegraded, "platform API unreachable")
	})
	if s := statusOf(rg.g, "tc"); s.State != normalize.StateDegraded || s.Reason != "platform API unreachable" {
		t.Errorf("status %+v", s)
	}
	conn.health.Platform(nil)
	wait.For(t, 5*time.Second, "the running state event after degraded", func() bool {
		evs := stateEvents(t, r, "tc")
		return len(evs) > 0 && evs[len(evs)-1].Data.State.State == normalize.StateRunning && hasState(evs, normalize.StateDegraded, "")
	})

	scrape := func() string {
		srv := httptest.NewServer(met.Handler())
		defer srv.Close()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	body := scrape()
	for _, w := range []string{
		`parley_connector_state{connector="tc",state="running"} 1`,
		`parley_connector_state{connector="tc",state="degraded"} 0`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("metrics lack %s", w)
		}
	}

	rg.stop(t)
	evs := stateEvents(t, r, "tc")
	if last := evs[len(evs)-1]; last.Data.State.State != normalize.StateStopped {
		t.Errorf("last state event after shutdown is %s, want stopped", last.Data.State.State)
	}
	for _, ev := range evs {
		if want := "parley.evt.eu.testchat.tc._.connector"; ev.Subject != "" {
			t.Errorf("state event has subject %q; its NATS subject should be %s", ev.Subject, want)
		}
	}
}

func TestFailedRunIsRestartedAndItsStateSaysWhy(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	p := newProbe()
	rg := start(t, options(b, r, "a", spec("tc", "a", testConfig{Probe: p, FailRuns: 2, FailWith: "token revoked"})))

	wait.For(t, 5*time.Second, "the third run", func() bool { return p.runsOf("tc") >= 3 })
	wait.For(t, 5*time.Second, "running after restarts", func() bool { return statusOf(rg.g, "tc").State == normalize.StateRunning })
	wait.For(t, 5*time.Second, "the failure and recovery events", func() bool {
		evs := stateEvents(t, r, "tc")
		return hasState(evs, normalize.StateStopped, "run failed: token revoked") &&
			len(evs) > 0 && evs[len(evs)-1].Data.State.State == normalize.StateRunning
	})
	// Two identical failures in a row are one event, not one per attempt.
	n := 0
	for _, ev := range stateEvents(t, r, "tc") {
		if strings.Contains(ev.Data.State.Reason, "token revoked") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d events for two identical failures, want 1", n)
	}
}

func TestPanickingRunIsRestarted(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	p := newProbe()
	rg := start(t, options(b, r, "a", spec("tc", "a", testConfig{Probe: p, PanicRuns: 1})))
	wait.For(t, 5*time.Second, "running after the panic", func() bool {
		return p.runsOf("tc") == 2 && statusOf(rg.g, "tc").State == normalize.StateRunning
	})
	wait.For(t, 5*time.Second, "the panic's state event", func() bool {
		return hasState(stateEvents(t, r, "tc"), normalize.StateStopped, "run panicked: nil map write")
	})
}

func TestConnectorThatKeepsFailingIsNotReady(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	tests := []struct {
		name      string
		id        string
		cfg       testConfig
		wantState normalize.State
	}{
		{
			name: "an unexplained failure reads stopped", id: "tc-socket",
			cfg:       testConfig{FailRuns: 1 << 30, FailWith: "socket closed"},
			wantState: normalize.StateStopped,
		},
		{
			name: "a connector's own reason to stop is kept", id: "tc-token",
			cfg:       testConfig{FailRuns: 1 << 30, FailWith: "token revoked", FailState: normalize.StateBadCredentials},
			wantState: normalize.StateBadCredentials,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Probe = newProbe()
			rg := start(t, options(b, r, "a", spec(tt.id, "a", tt.cfg)))
			id := tt.id
			wait.For(t, 5*time.Second, "a few restarts", func() bool { return tt.cfg.Probe.runsOf(id) >= 3 })
			wait.For(t, 5*time.Second, "the failure state", func() bool {
				s := statusOf(rg.g, id)
				return s.State == tt.wantState && strings.Contains(s.Reason, "run failed: "+tt.cfg.FailWith)
			})
			if rg.g.Ready() {
				t.Error("a gateway with a failing connector is ready")
			}
		})
	}
}

func TestExclusiveConnectorRunsOnOneInstanceAndMoves(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) { o.LeaseTTL = time.Second })
	r := bustest.ProvisionRegion(t, b, region)
	p := newProbe()
	cfg := testConfig{Exclusive: true, Affinity: true, Probe: p}
	ga := start(t, options(b, r, "a", spec("poller", "a", cfg)))
	gb := start(t, options(b, r, "b", spec("poller", "b", cfg)))
	byName := map[string]*running{"poller@a": ga, "poller@b": gb}

	wait.For(t, 5*time.Second, "one instance to run the poller", func() bool { return len(p.runningOn("poller")) == 1 })
	first := p.runningOn("poller")[0]
	holder := byName[first]
	other, otherName := gb, "poller@b"
	if holder == gb {
		other, otherName = ga, "poller@a"
	}
	wait.For(t, 5*time.Second, "the holder to read running", func() bool {
		return statusOf(holder.g, "poller").State == normalize.StateRunning
	})
	if s := statusOf(holder.g, "poller"); !s.LeaseHeld || !s.Exclusive {
		t.Errorf("holder status %+v", s)
	}
	wait.For(t, 5*time.Second, "the other instance to stand by", func() bool {
		return statusOf(other.g, "poller").State == gateway.StateStandby
	})
	if s := statusOf(other.g, "poller"); s.LeaseHeld || !strings.Contains(s.Reason, "another instance") {
		t.Errorf("standby status %+v, want standby without lease", s)
	}
	if !other.g.Ready() {
		t.Error("a standby instance is not ready")
	}
	// Sends need the session: only the holder sends and fetches media.
	if c, _ := holder.g.Connector("poller"); c.Standby {
		t.Error("the lease holder hands its sends away")
	}
	if c, _ := other.g.Connector("poller"); !c.Standby {
		t.Error("the standby instance would send without the session")
	}
	if _, ok := other.g.MediaFetcher("poller"); ok {
		t.Error("the standby instance would fetch media without the session")
	}

	// A while with both up: the standby must never start it.
	time.Sleep(1500 * time.Millisecond) // observation window longer than the lease TTL, not a wait for a condition
	if n := p.maxLiveOf("poller"); n != 1 {
		t.Fatalf("poller ran on %d instances at once", n)
	}

	holder.stop(t)
	wait.For(t, 10*time.Second, "the poller to move to "+otherName, func() bool {
		on := p.runningOn("poller")
		return len(on) == 1 && on[0] == otherName
	})
	wait.For(t, 5*time.Second, "the new holder to read running with the lease", func() bool {
		s := statusOf(other.g, "poller")
		return s.State == normalize.StateRunning && s.LeaseHeld
	})
	if n := p.maxLiveOf("poller"); n != 1 {
		t.Errorf("poller ran on %d instances at once during the move", n)
	}
	evs := stateEvents(t, r, "poller")
	if hasState(evs, gateway.StateStandby, "") {
		t.Error("a standby state was published as an event")
	}
}

func TestRunReturnsOnCancelWithNoConnectors(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	rg := start(t, options(b, r, "a"))
	if !rg.g.Ready() {
		t.Error("a gateway without connectors is not ready")
	}
	rg.stop(t)
}

// TestAConnectorThatNeedsAnOperatorWaitsForAReload: a revoked token or a
// logged-out device is not retried every minute for ever; the state and
// its action stay until the operator reloads, with the same settings (a
// re-paired device) or new ones (a new token).
func TestAConnectorThatNeedsAnOperatorWaitsForAReload(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	p := newProbe()
	cfg := testConfig{Probe: p, FailRuns: 2, FailWith: "token revoked", FailState: normalize.StateBadCredentials, NeedsOperator: true}
	sp := spec("tc", "a", cfg)
	sp.Version = "v1"
	rg := start(t, options(b, r, "a", sp))

	wait.For(t, 5*time.Second, "the operator's state", func() bool {
		s := statusOf(rg.g, "tc")
		return s.State == normalize.StateBadCredentials && strings.Contains(s.Action, "renew the token") && strings.Contains(s.Action, "reload")
	})
	wait.For(t, 5*time.Second, "its state event", func() bool {
		return hasState(stateEvents(t, r, "tc"), normalize.StateBadCredentials, "token revoked")
	})
	// Proving a negative: RestartMax (200ms) passes several times over
	// and no restart comes.
	time.Sleep(500 * time.Millisecond)
	if n := p.runsOf("tc"); n != 1 {
		t.Fatalf("%d runs, want 1: a connector waiting for an operator was restarted", n)
	}

	// The same settings: resumed once, fails again, waits again.
	if err := rg.g.Reload([]gateway.Spec{sp}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "the resumed run", func() bool { return p.runsOf("tc") == 2 })

	// New settings: rebuilt and running.
	fixed := spec("tc", "a", testConfig{Probe: p})
	fixed.Version = "v2"
	if err := rg.g.Reload([]gateway.Spec{fixed}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "running with the new settings", func() bool {
		return p.runsOf("tc") == 3 && statusOf(rg.g, "tc").State == normalize.StateRunning
	})

	// A reload cannot add connectors.
	if err := rg.g.Reload([]gateway.Spec{spec("new", "a", testConfig{})}); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Errorf("Reload with a new connector = %v, want an error saying a restart is needed", err)
	}
}

// TestReloadRestartsARunningConnectorWithItsNewSettings: a changed block
// replaces the running connector; an unchanged one is left alone.
func TestReloadRestartsARunningConnectorWithItsNewSettings(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	p := newProbe()
	sp := spec("tc", "a", testConfig{Probe: p})
	sp.Version = "v1"
	rg := start(t, options(b, r, "a", sp))
	wait.For(t, 5*time.Second, "running", func() bool { return statusOf(rg.g, "tc").State == normalize.StateRunning })
	if err := rg.g.Reload([]gateway.Spec{sp}); err != nil {
		t.Fatal(err)
	}
	changed := spec("tc", "a", testConfig{Probe: p, Webhook: true})
	changed.Version = "v2"
	if err := rg.g.Reload([]gateway.Spec{changed}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "the second run", func() bool { return p.runsOf("tc") == 2 })
	if _, ok := rg.g.Webhook("tc"); !ok {
		t.Error("the rebuilt connector's webhook is not served")
	}
	if n := p.runsOf("tc"); n != 2 {
		t.Errorf("%d runs, want 2: an unchanged reload restarted the connector", n)
	}
}
