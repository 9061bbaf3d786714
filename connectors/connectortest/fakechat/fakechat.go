package fakechat

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"strings"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
)

//go:embed sample.yaml
var sample string

// Descriptor describes the fakechat connector to the registry.
var Descriptor = connectors.Descriptor{
	Platform: platform,
	Name:     "Fakechat",
	New:      New,
	Validate: validate,
	Sample:   sample,
}

// Connector is one fakechat app and the accounts it serves. Build it with
// New (through Descriptor).
type Connector struct {
	deps    connectors.Deps
	cfg     config
	log     *slog.Logger
	health  *kit.Health
	inbound *kit.Inbound
	webhook *kit.Webhook
}

// New decodes and validates settings and returns a connector. It does no
// I/O.
func New(deps connectors.Deps, raw connectors.Settings) (connectors.Connector, error) {
	cfg, err := decode(raw)
	if err != nil {
		return nil, err
	}
	deps = kit.WithDefaults(deps)
	c := &Connector{deps: deps, cfg: cfg, log: deps.Logger}
	c.health = kit.NewHealth(deps)
	c.inbound = kit.NewInbound(deps, c.health)
	c.webhook = c.newWebhook()
	return c, nil
}

// Run receives nothing itself: fakechat pushes to Webhook, which every
// instance serves, so Run reports the connector running and, until ctx
// ends, watches for storage to come back after an outage (a webhook
// connector has no traffic of its own to prove it). It returns nil.
func (c *Connector) Run(ctx context.Context) error {
	c.health.Begin()
	c.log.Info("fakechat connector starting", "accounts", len(c.cfg.tokens))
	if c.deps.PublicURL != "" {
		// fakechat has no API to subscribe a webhook: the operator sets it
		// in the developer console.
		c.log.Info("set this webhook URL in fakechat's developer console", "url", strings.TrimRight(c.deps.PublicURL, "/")+"/webhooks/"+c.deps.ID)
	}
	c.health.Started()
	c.health.WatchStorage(ctx, c.deps.Publisher)
	c.health.End()
	c.log.Info("fakechat connector stopped")
	return nil
}

// Health returns the last known state without I/O.
func (c *Connector) Health() connectors.Health { return c.health.Get() }

// Webhook returns the handler of /webhooks/{id}: POST carries events, GET
// is the verification handshake.
func (c *Connector) Webhook() http.Handler { return c.webhook }

// Policy returns fakechat's limits and reply window. Each account has its
// own budget: the limit key is the address's account.
func (c *Connector) Policy(to connectors.Address) connectors.Policy {
	return connectors.Policy{Limits: c.cfg.rates.Limits(to), Window: window}
}

// InboundStats returns the inbound counters, for metrics.
func (c *Connector) InboundStats() connectors.InboundStats { return c.inbound.Stats() }

// Interface guards.
var (
	_ connectors.Connector        = (*Connector)(nil)
	_ connectors.WebhookConnector = (*Connector)(nil)
	_ connectors.MediaFetcher     = (*Connector)(nil)
	_ connectors.InboundCounter   = (*Connector)(nil)
)
