// Package app assembles a whole Parley gateway from a configuration: the
// NATS bus, the per-region streams and buckets, the connectors under their
// supervisor, the outbox and media workers of every served region, and the
// HTTP server. cmd/parley's serve and demo both run it; tests run it too.
package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parley-gateway/parley/config"
	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/registry"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/gateway"
	"github.com/parley-gateway/parley/internal/httpapi"
	"github.com/parley-gateway/parley/internal/ledger"
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/normalize"
	"github.com/parley-gateway/parley/outbox"
)

// Options are the run-time choices that are not part of the config file.
type Options struct {
	// Regions to serve; empty means every region an enabled connector names.
	Regions []string
	Logger  *slog.Logger
	// InstanceID names this process in leases; random when empty.
	InstanceID string
	// ShutdownTimeout bounds the wait for in-flight work on stop; a reply
	// being sent is waited for past it (within the outbox's own bound), so
	// that its outcome is recorded before NATS closes.
	ShutdownTimeout time.Duration
	// HTTPClient is used for platform API calls; a default with timeouts
	// when nil.
	HTTPClient *http.Client
	// Outbox tunes the outbox of every region (zero values: defaults).
	Outbox OutboxTuning
	// Platforms are the connectors this gateway can run (default
	// registry.All()).
	Platforms registry.List
}

// OutboxTuning exposes the outbox's retry knobs (the demo shortens them).
type OutboxTuning struct {
	MaxAttempts    int
	InProcessRetry time.Duration
	RetryBase      time.Duration
	RetryMax       time.Duration
}

// App is a running-or-ready gateway.
type App struct {
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	bus     *bus.Bus
	regions map[string]*bus.Region
	dirs    map[string]*directory.Store
	ledgers map[string]*ledger.Ledger
	metrics *metrics.Metrics
	gw      *gateway.Gateway
	outbox  []*outbox.Outbox
	media   []*media.Worker
	http    *httpapi.Server
}

// New validates the selection, logs the configuration's warnings, opens
// NATS (embedded or external), provisions every served region and builds
// every component. It starts nothing that receives traffic: on any error
// everything opened is closed again, so a bad configuration never leaves
// half a gateway running.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *App, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 20 * time.Second
	}
	if opts.InstanceID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.InstanceID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 90 * time.Second}
	}
	if opts.Platforms == nil {
		opts.Platforms = registry.All()
	}
	regions := opts.Regions
	if len(regions) == 0 {
		regions = cfg.Regions()
	}
	specs, err := Specs(opts.Platforms, cfg, regions)
	if err != nil {
		return nil, err
	}
	for _, r := range opts.Regions {
		if !slices.Contains(cfg.Regions(), r) {
			return nil, fmt.Errorf("region %q: no enabled connector names it", r)
		}
	}
	for _, w := range cfg.Warnings() {
		opts.Logger.Warn(w)
	}

	a := &App{cfg: cfg, opts: opts, log: opts.Logger, regions: map[string]*bus.Region{},
		dirs: map[string]*directory.Store{}, ledgers: map[string]*ledger.Ledger{}}
	defer func() {
		if err != nil && a.bus != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = a.bus.Close(cctx)
		}
	}()

	a.bus, err = bus.Open(ctx, BusOptions(cfg, opts.InstanceID, opts.Logger))
	if err != nil {
		return nil, fmt.Errorf("opening nats: %w", err)
	}
	for _, r := range regions {
		h, err := a.bus.Provision(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("provisioning region %s: %w", r, err)
		}
		a.regions[r] = h
		a.dirs[r] = directory.New(h.Directory, r)
		a.ledgers[r] = ledger.New(a.bus, h.Ledger, r, a.dirs[r])
	}
	a.metrics = metrics.New()

	a.gw, err = gateway.New(gateway.Options{
		Bus: a.bus, Regions: a.regions, Directory: a.dirs, Ledger: a.ledgers, DataDir: cfg.DataDir, Specs: specs,
		PublicURL: cfg.HTTP.PublicURL, HTTPClient: opts.HTTPClient, Metrics: a.metrics,
		Logger: opts.Logger, InstanceID: opts.InstanceID,
	})
	if err != nil {
		return nil, err
	}
	for _, r := range regions {
		ob, err := outbox.New(outbox.Options{
			Region: r, Bus: a.bus, Handles: a.regions[r], Directory: a.dirs[r], Ledger: a.ledgers[r],
			Lookup: a.outboxTarget, Connectors: func() []string { return a.gw.ConnectorIDs(r) }, Logger: opts.Logger.With("component", "outbox"), InstanceID: opts.InstanceID,
			Observer:       a.metrics.OutboxObserver(r),
			MaxAttempts:    opts.Outbox.MaxAttempts,
			InProcessRetry: opts.Outbox.InProcessRetry,
			RetryBase:      opts.Outbox.RetryBase,
			RetryMax:       opts.Outbox.RetryMax,
		})
		if err != nil {
			return nil, fmt.Errorf("outbox of region %s: %w", r, err)
		}
		a.outbox = append(a.outbox, ob)
		mw, err := media.NewWorker(media.Options{
			Bus: a.bus, Handles: a.regions[r], Region: r, Lookup: a.mediaFetcher, Metrics: a.metrics,
			Logger: opts.Logger.With("component", "media", "region", r),
		})
		if err != nil {
			return nil, fmt.Errorf("media worker of region %s: %w", r, err)
		}
		a.media = append(a.media, mw)
	}

	tokens := make([]string, 0, len(cfg.API.Tokens))
	for _, t := range cfg.API.Tokens {
		tokens = append(tokens, t.Reveal())
	}
	a.http = httpapi.New(httpapi.Options{
		Listen: cfg.HTTP.Listen, MaxBodyBytes: cfg.HTTP.MaxBodyBytes, Tokens: tokens,
		Webhook: a.gw.Webhook, Ready: a.ready, SubmitReply: a.submitReply,
		Conversation: a.conversation, Media: a.openMedia, Metrics: a.metrics.Handler(),
		OnWebhook: a.metrics.WebhookAnswered, Logger: opts.Logger.With("component", "http"),
	})
	if err := a.http.Listen(); err != nil {
		return nil, err
	}
	return a, nil
}

// Specs turns the enabled connectors of the given regions into supervisor
// specs, with every connector's own settings validated. It does no I/O.
func Specs(platforms registry.List, cfg *config.Config, regions []string) ([]gateway.Spec, error) {
	var specs []gateway.Spec
	for _, c := range cfg.EnabledConnectors(regions) {
		p, ok := platforms.Lookup(c.Platform)
		if !ok {
			return nil, fmt.Errorf("connector %s: platform %q is not built into this binary", c.ID, c.Platform)
		}
		specs = append(specs, gateway.Spec{ID: c.ID, Platform: c.Platform, Region: c.Region, Descriptor: p.Descriptor,
			Settings: c, Version: settingsVersion(c)})
	}
	return specs, nil
}

// settingsVersion fingerprints a connector's block as expanded (secrets
// included, so a rotated token counts as a change), for Reload.
func settingsVersion(c config.Connector) string {
	var v any
	if c.Settings != nil {
		_ = c.Settings.Decode(&v)
	}
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// SettingsCheck returns the check of each connector's platform block with
// its connector's own rules, for config.Validate and `parley config check`.
func SettingsCheck(platforms registry.List) config.SettingsCheck {
	return func(c config.Connector) []config.Problem {
		p, ok := platforms.Lookup(c.Platform)
		if !ok {
			return []config.Problem{{Path: "", Message: fmt.Sprintf("platform %q is not built into this binary (it has: %s)", c.Platform, strings.Join(platforms.Names(), ", "))}}
		}
		var out []config.Problem
		for _, q := range p.Validate(c) {
			out = append(out, config.Problem{Path: q.Path, Message: q.Message})
		}
		return out
	}
}

// LoadOptions are the config.Load options of a gateway that runs platforms.
func LoadOptions(platforms registry.List) []config.Option {
	return []config.Option{config.WithPlatforms(platforms.Names()), config.WithSettingsCheck(SettingsCheck(platforms))}
}

// BusOptions maps the nats block of the config to bus options.
func BusOptions(cfg *config.Config, name string, log *slog.Logger) bus.Options {
	n := cfg.NATS
	return bus.Options{
		URL: n.URL, DataDir: cfg.DataDir,
		CredentialsFile: n.CredentialsFile, User: n.User, Password: n.Password.Reveal(),
		Token: n.Token.Reveal(), NKeySeedFile: n.NKeySeedFile,
		TLSCAFile: n.TLS.CAFile, TLSCertFile: n.TLS.CertFile, TLSKeyFile: n.TLS.KeyFile,
		Replicas: n.Replicas, SubjectPrefix: n.SubjectPrefix,
		DedupeWindow: time.Duration(n.DedupeWindow), EventMaxAge: time.Duration(n.EventMaxAge), LedgerTTL: time.Duration(n.LedgerTTL),
		EmbeddedListen: n.Embedded.Listen, SyncAlways: n.Embedded.Sync != "interval",
		Name: "parley " + name, Logger: log.With("component", "nats"),
	}
}

// Bus returns the NATS bus (for the demo and tests).
func (a *App) Bus() *bus.Bus { return a.bus }

// Regions returns the provisioned handles of the served regions.
func (a *App) Regions() map[string]*bus.Region { return a.regions }

// Directory returns a served region's conversation directory.
func (a *App) Directory(region string) *directory.Store { return a.dirs[region] }

// HTTPAddr is where the HTTP server listens.
func (a *App) HTTPAddr() string { return a.http.Addr() }

// Gateway returns the connector supervisor.
func (a *App) Gateway() *gateway.Gateway { return a.gw }

// Run serves until ctx ends, then shuts down in order: stop taking
// webhooks and replies (503), stop the connectors, let the outbox and media
// workers finish what they hold, stop HTTP, close NATS. A component that
// fails ends the run with its error after the same orderly shutdown.
func (a *App) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// outboxes is waited for apart: a send in flight may outlast
	// ShutdownTimeout, and its outcome must be recorded before NATS closes.
	var wg, outboxes sync.WaitGroup
	fail := func(what string, err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("component stopped", "component", what, "error", err)
			cancel(fmt.Errorf("%s: %w", what, err))
		}
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- a.http.Serve() }()
	a.log.Info("parley is serving", "http", a.http.Addr(), "nats", a.bus.Status().URL, "regions", slices.Sorted(maps.Keys(a.regions)))

	wg.Add(1)
	go func() { defer wg.Done(); fail("gateway", a.gw.Run(runCtx)) }()
	for _, ob := range a.outbox {
		outboxes.Add(1)
		go func() { defer outboxes.Done(); fail("outbox", ob.Run(runCtx)) }()
	}
	for _, mw := range a.media {
		wg.Add(1)
		go func() { defer wg.Done(); fail("media", mw.Run(runCtx)) }()
	}

	select {
	case <-runCtx.Done():
	case err := <-httpDone:
		fail("http", err)
		<-runCtx.Done()
		httpDone <- nil
	}
	a.log.Info("parley is stopping")
	a.http.Drain()
	done := make(chan struct{})
	go func() { wg.Wait(); outboxes.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.opts.ShutdownTimeout):
		a.log.Warn("shutdown timed out; unfinished work will be redelivered", "timeout", a.opts.ShutdownTimeout)
		// Never close NATS under a send in flight: its outcome would not be
		// recorded and a redelivery would send it again. Each outbox's Run
		// returns within its own bound (the longest send and its
		// bookkeeping) and gives up, loudly, whatever is still running.
		a.log.Info("waiting for replies being sent to record their outcome")
		outboxes.Wait()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = a.http.Shutdown(sctx)
	<-httpDone
	if err := a.bus.Close(sctx); err != nil {
		a.log.Warn("closing nats", "error", err)
	}
	if cause := context.Cause(runCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

func (a *App) outboxTarget(id string) (outbox.Target, bool) {
	s, ok := a.gw.Connector(id)
	if !ok {
		return outbox.Target{}, false
	}
	return outbox.Target{Sender: s.Connector, Platform: s.Platform, Standby: s.Standby, Session: s.Session}, true
}

func (a *App) mediaFetcher(id string) (connectors.MediaFetcher, bool) { return a.gw.MediaFetcher(id) }

// Reload applies a new configuration to the running connectors: those whose
// settings changed are rebuilt and restarted, those stopped for an
// operator are resumed. Everything else (regions, NATS, HTTP, adding or
// removing connectors) needs a restart; Reload says so in its error.
func (a *App) Reload(cfg *config.Config) error {
	specs, err := Specs(a.opts.Platforms, cfg, slices.Sorted(maps.Keys(a.regions)))
	if err != nil {
		return err
	}
	return a.gw.Reload(specs)
}

// ready is httpapi's Ready: the server adds "ready" and "draining" to the
// body, since only it knows whether it is draining.
// ready is /readyz: NATS must answer a round trip (a frozen server that
// keeps its connection open reads not ready within a second), and every
// connector be healthy.
func (a *App) ready() (bool, map[string]any) {
	st := a.bus.Check(context.Background())
	return st.Connected && a.gw.Ready(), map[string]any{
		"nats":       st,
		"connectors": a.gw.States(),
	}
}

func (a *App) submitReply(ctx context.Context, r *normalize.Reply) (bool, error) {
	var lastErr error = directory.ErrUnknown
	for _, region := range slices.Sorted(maps.Keys(a.dirs)) {
		res, err := outbox.Submit(ctx, a.bus, a.dirs[region], r)
		if errors.Is(err, directory.ErrUnknown) {
			continue
		}
		if err != nil {
			return false, err
		}
		return res.Duplicate, nil
	}
	return false, lastErr
}

func (a *App) conversation(ctx context.Context, id normalize.ConversationID) (*directory.Entry, error) {
	for _, region := range slices.Sorted(maps.Keys(a.dirs)) {
		e, _, err := a.dirs[region].Get(ctx, id)
		if errors.Is(err, directory.ErrUnknown) {
			continue
		}
		return e, err
	}
	return nil, directory.ErrUnknown
}

func (a *App) openMedia(ctx context.Context, id normalize.MediaID) (io.ReadCloser, string, int64, error) {
	handles := make([]*bus.Region, 0, len(a.regions))
	for _, r := range slices.Sorted(maps.Keys(a.regions)) {
		handles = append(handles, a.regions[r])
	}
	rc, ctype, size, err := media.Open(ctx, handles, string(id))
	if errors.Is(err, media.ErrNotFound) {
		return nil, "", 0, fmt.Errorf("media %s: %w", id, httpapi.ErrNotFound)
	}
	return rc, ctype, size, err
}
