// Package gateway is the supervisor of an instance's connectors: it builds
// each one with its real dependencies (the ingest publisher, cursors,
// conversation reachability, a scoped logger), runs it, restarts it with
// backoff when its Run fails, holds the lease of the connectors that must run
// on one instance only, and reports every connector's state — as
// parley.connector.state events, as a metrics gauge and to /readyz.
//
// Invariants:
//
//   - New builds every connector or none: when any connector's
//     construction fails, New returns all the failures and no gateway.
//   - An Exclusive connector's Run executes only while this instance holds
//     the lease "connector.<id>" in its region's leases bucket; its context
//     is cancelled as soon as the lease cannot be proven held.
//   - Run returns only when its context has ended and every connector's
//     Run has returned.
//   - State events are published by the instance that runs the connector:
//     a standby instance does not speak for a connector another instance
//     runs, so its standby state is local (readiness, metrics) only.
//   - A Run that ends with connectors.NeedsOperator is not restarted: the
//     connector stays in its state with its action until Reload (the
//     operator re-paired, or set a new token and reloaded), instead of
//     failing again every minute for ever.
//   - Reload swaps in a connector rebuilt from changed settings between two
//     Runs: its Run is stopped, the new one started, nothing else moves.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/ingest"
	"github.com/parley-gateway/parley/internal/ledger"
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/normalize"
)

// StateStandby is the local state of an Exclusive connector while another
// instance holds its lease. It is healthy (Ready counts it as up) and never
// published as a connector.state event, whose states are the contract's.
const StateStandby normalize.State = "standby"

// Defaults of Options.
const (
	DefaultRestartMin  = time.Second
	DefaultRestartMax  = time.Minute
	DefaultStableAfter = 2 * time.Second
	// stateFlushTimeout bounds the last state publish at shutdown.
	stateFlushTimeout = 2 * time.Second
	// statePublishTimeout bounds one state publish attempt.
	statePublishTimeout = 5 * time.Second
	// maxQueuedStates bounds the state events waiting for NATS; the oldest
	// go first, the latest state always stays.
	maxQueuedStates = 32
)

// Spec is one enabled connector to run.
type Spec struct {
	ID         string
	Platform   string
	Region     string
	Descriptor connectors.Descriptor
	Settings   connectors.Settings
	// Version tells settings apart for Reload: a spec whose Version
	// changed is rebuilt. Any string that changes with the settings.
	Version string
	// Account is the platform account recorded in the directory for the
	// conversations of this connector; empty when the connector has no
	// single account to name (the directory keeps what it had).
	Account string
}

// Options configure a Gateway.
type Options struct {
	Bus *bus.Bus
	// Regions are the provisioned regions this instance serves; every
	// Spec's region must be among them.
	Regions map[string]*bus.Region
	// Directory is each region's conversation directory; a missing entry
	// is built over the region's directory bucket.
	Directory map[string]*directory.Store
	// Ledger is each region's reply ledger; a missing entry is built over
	// the region's ledger bucket.
	Ledger map[string]*ledger.Ledger
	// DataDir is the configured data_dir; each connector's Deps.DataDir is
	// DataDir/connectors/<id>.
	DataDir    string
	Specs      []Spec
	PublicURL  string
	HTTPClient *http.Client     // nil: a client without overall timeout (connectors use contexts)
	Metrics    *metrics.Metrics // nil records nothing
	Logger     *slog.Logger     // nil discards
	// InstanceID names this instance as a lease holder (default
	// hostname-pid).
	InstanceID string
	// LeaseTTL is the lease TTL; 0 or more than the bucket's TTL means the
	// bucket's TTL.
	LeaseTTL time.Duration

	// RestartMin and RestartMax bound the backoff between restarts of a
	// failed Run (defaults 1s and 1m).
	RestartMin, RestartMax time.Duration
	// StableAfter is how long a (re)started Run must last before the
	// gateway re-publishes the connector's own health, in case the
	// connector does not report a state it already had before it failed
	// (default 2s).
	StableAfter time.Duration
	Now         func() time.Time // nil is time.Now
}

// ConnectorStatus is one connector's state as /readyz shows it.
type ConnectorStatus struct {
	ID        string          `json:"id"`
	Platform  string          `json:"platform"`
	Region    string          `json:"region"`
	State     normalize.State `json:"state"`
	Reason    string          `json:"reason,omitempty"`
	Action    string          `json:"action,omitempty"`
	Since     time.Time       `json:"since"`
	Exclusive bool            `json:"exclusive"`
	LeaseHeld bool            `json:"lease_held"`
}

// Healthy reports whether the connector counts as ready (CONTRACT §3:
// /readyz is 200 only while every enabled connector is running). Standby
// counts: the connector runs on the instance holding its lease, and this
// instance still serves its webhooks and replies. Degraded does not: the
// operator must see it, and a platform's retries cover the time it lasts.
func (s ConnectorStatus) Healthy() bool {
	switch s.State {
	case normalize.StateRunning, StateStandby:
		return true
	}
	return false
}

// Gateway supervises the connectors of one instance.
type Gateway struct {
	o     Options
	log   *slog.Logger
	units []*unit
	byID  map[string]*unit

	runMu   sync.Mutex
	running bool
}

// New builds every connector of opts.Specs; it does no I/O. It fails, with
// every problem listed, when any spec is invalid or any connector's New
// fails.
func New(o Options) (*Gateway, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.RestartMin <= 0 {
		o.RestartMin = DefaultRestartMin
	}
	if o.RestartMax <= 0 {
		o.RestartMax = DefaultRestartMax
	}
	o.RestartMax = max(o.RestartMax, o.RestartMin)
	if o.StableAfter <= 0 {
		o.StableAfter = DefaultStableAfter
	}
	if o.InstanceID == "" {
		host, _ := os.Hostname()
		o.InstanceID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if o.Bus == nil {
		return nil, errors.New("building gateway: bus required")
	}

	g := &Gateway{o: o, log: o.Logger, byID: map[string]*unit{}}
	var errs []error
	for i, s := range o.Specs {
		u, err := g.build(s)
		if err != nil {
			name := s.ID
			if name == "" {
				name = "#" + strconv.Itoa(i)
			}
			errs = append(errs, fmt.Errorf("connector %s: %w", name, err))
			continue
		}
		g.units = append(g.units, u)
		g.byID[s.ID] = u
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("building gateway: %w", errors.Join(errs...))
	}
	return g, nil
}

// build constructs one connector's unit.
func (g *Gateway) build(s Spec) (*unit, error) {
	switch {
	case s.ID == "":
		return nil, errors.New("id required")
	case g.byID[s.ID] != nil:
		return nil, errors.New("duplicate id")
	case s.Descriptor.New == nil:
		return nil, fmt.Errorf("platform %q has no constructor", s.Platform)
	case s.Descriptor.Platform != "" && s.Platform != "" && s.Descriptor.Platform != s.Platform:
		return nil, fmt.Errorf("platform %q does not match its descriptor %q", s.Platform, s.Descriptor.Platform)
	}
	if s.Platform == "" {
		s.Platform = s.Descriptor.Platform
	}
	region := g.o.Regions[s.Region]
	if region == nil {
		return nil, fmt.Errorf("region %q is not served by this instance", s.Region)
	}
	log := g.o.Logger.With("connector", s.ID, "platform", s.Platform, "region", s.Region)
	u := &unit{
		g:      g,
		region: region,
		log:    log,
		wake:   make(chan struct{}, 1),
		resume: make(chan struct{}, 1),
	}
	u.overlay = &connectors.Health{State: normalize.StateStarting, Reason: "not started yet", Since: g.o.Now()}
	b, err := g.construct(u, s)
	if err != nil {
		return nil, err
	}
	u.built = b
	if err := g.o.Metrics.RegisterInbound(s.ID, u.inboundStats); err != nil {
		return nil, err
	}
	return u, nil
}

// construct builds the connector of s with its real dependencies.
func (g *Gateway) construct(u *unit, s Spec) (b *built, err error) {
	region := g.o.Regions[s.Region]
	dir := g.o.Directory[s.Region]
	if dir == nil {
		dir = directory.New(region.Directory, s.Region)
	}
	led := g.o.Ledger[s.Region]
	if led == nil {
		led = ledger.New(g.o.Bus, region.Ledger, s.Region, dir)
	}
	b = &built{spec: s}
	pub := ingest.New(ingest.Options{
		Bus: g.o.Bus, Region: s.Region, Platform: s.Platform, Connector: s.ID, Account: s.Account,
		Directory: dir, Metrics: g.o.Metrics, Logger: u.log, Now: g.o.Now,
		// The built connector answers: the same Policy the outbox asks.
		Policy: func(to connectors.Address) connectors.Policy { return b.conn.Policy(to) },
	})
	b.pub = pub
	dataDir := ""
	if g.o.DataDir != "" {
		dataDir = filepath.Join(g.o.DataDir, "connectors", s.ID)
	}
	deps := connectors.Deps{
		ID: s.ID, Platform: s.Platform, Region: s.Region,
		Logger:        u.log,
		Publisher:     pub,
		Rejects:       ingest.NewRejects(g.o.Bus, s.Region, s.Platform, s.ID, g.o.Metrics),
		Cursors:       ingest.NewCursors(region.Cursors, s.ID),
		Conversations: ingest.NewConversations(dir),
		Ledger:        led.For(s.ID, s.Platform),
		Media:         media.NewStore(region), // the connector's own region only: media stays where it was received
		HTTPClient:    g.o.HTTPClient,
		PublicURL:     g.o.PublicURL,
		DataDir:       dataDir,
		Now:           g.o.Now,
		OnHealth:      u.onHealth,
	}

	defer func() {
		// A constructor must not panic on bad settings, but if one does the
		// operator gets a config error instead of a crash.
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("constructor panicked: %v", r)
		}
	}()
	conn, err := s.Descriptor.New(deps, s.Settings)
	if err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, errors.New("constructor returned no connector")
	}
	b.conn = conn
	if ex, ok := conn.(connectors.Exclusive); ok && ex.Exclusive() {
		b.exclusive = true
	}
	if sa, ok := conn.(connectors.SendAffinity); ok && sa.SendsNeedSession() {
		b.affinity = true
	}
	if wc, ok := conn.(connectors.WebhookConnector); ok {
		b.webhook = wc.Webhook()
	}
	return b, nil
}

// Run runs every connector until ctx ends and returns when all of them
// have stopped. It may be called once.
func (g *Gateway) Run(ctx context.Context) error {
	g.runMu.Lock()
	if g.running {
		g.runMu.Unlock()
		return errors.New("gateway already running")
	}
	g.running = true
	g.runMu.Unlock()

	g.log.Info("gateway starting", "connectors", len(g.units), "instance", g.o.InstanceID)
	var wg sync.WaitGroup
	for _, u := range g.units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.supervise(ctx)
		}()
	}
	wg.Wait()
	g.log.Info("gateway stopped")
	return nil
}

// Webhook returns the webhook handler of an enabled connector; false when
// the id is unknown or the connector takes no webhooks (the server answers
// 404).
func (g *Gateway) Webhook(id string) (http.Handler, bool) {
	u := g.byID[id]
	if u == nil {
		return nil, false
	}
	b := u.current()
	return b.webhook, b.webhook != nil
}

// Sending is a connector as the outbox sends through it.
type Sending struct {
	Connector connectors.Connector
	Platform  string
	// Standby is true when the connector's sends need its live session and
	// this instance does not hold it.
	Standby bool
	// Session is true when the connector's sends need its live session and
	// this instance holds it.
	Session bool
}

// ConnectorIDs lists the connectors of a region this instance runs.
func (g *Gateway) ConnectorIDs(region string) []string {
	var ids []string
	for _, u := range g.units {
		if b := u.current(); b.spec.Region == region {
			ids = append(ids, b.spec.ID)
		}
	}
	return ids
}

// Connector returns a connector for the outbox.
func (g *Gateway) Connector(id string) (Sending, bool) {
	u := g.byID[id]
	if u == nil {
		return Sending{}, false
	}
	b := u.current()
	needs := b.affinity && b.exclusive
	held := needs && u.holdsLease()
	return Sending{Connector: b.conn, Platform: b.spec.Platform, Standby: needs && !held, Session: held}, true
}

// MediaFetcher returns a connector's media fetcher, for the media worker's
// Lookup; false as well while its fetches need a session another instance
// holds.
func (g *Gateway) MediaFetcher(id string) (connectors.MediaFetcher, bool) {
	s, ok := g.Connector(id)
	if !ok || s.Standby {
		return nil, false
	}
	f, ok := s.Connector.(connectors.MediaFetcher)
	return f, ok
}

// Reload rebuilds the connectors whose spec Version changed and restarts
// their Run, and resumes every connector that stopped for an operator (who
// may have re-paired it without changing its settings). Connectors cannot
// be added or removed by a reload; specs naming an unknown id are listed in
// the error, and a spec that fails to build leaves its connector as it was.
func (g *Gateway) Reload(specs []Spec) error {
	var errs []error
	for _, s := range specs {
		u := g.byID[s.ID]
		if u == nil {
			errs = append(errs, fmt.Errorf("connector %s: added connectors need a restart", s.ID))
			continue
		}
		cur := u.current()
		if s.Version != cur.spec.Version {
			if s.Platform == "" {
				s.Platform = s.Descriptor.Platform
			}
			if s.Region != cur.spec.Region || s.Platform != cur.spec.Platform {
				errs = append(errs, fmt.Errorf("connector %s: a new region or platform needs a restart", s.ID))
				continue
			}
			b, err := g.construct(u, s)
			if err != nil {
				errs = append(errs, fmt.Errorf("connector %s: %w", s.ID, err))
				continue
			}
			u.log.Info("connector settings reloaded")
			u.replace(b)
			continue
		}
		u.wakeFromOperator()
	}
	if len(errs) > 0 {
		return fmt.Errorf("reloading connectors: %w", errors.Join(errs...))
	}
	return nil
}

// States returns every connector's status, in the order of the specs.
func (g *Gateway) States() []ConnectorStatus {
	out := make([]ConnectorStatus, len(g.units))
	for i, u := range g.units {
		out[i] = u.status()
	}
	return out
}

// Ready reports whether every connector is healthy (see
// ConnectorStatus.Healthy). A gateway without connectors is ready.
func (g *Gateway) Ready() bool {
	for _, u := range g.units {
		if !u.status().Healthy() {
			return false
		}
	}
	return true
}
