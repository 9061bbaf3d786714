package telegram

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

//go:embed sample.yaml
var sample string

// Descriptor describes the Telegram connector to the registry.
var Descriptor = connectors.Descriptor{
	Platform: inPlatform,
	Name:     "Telegram",
	New:      New,
	Validate: validate,
	Sample:   sample,
}

// defaultRates are Telegram's flood limits (Bot FAQ): about one message a
// second per chat, twenty a minute per group, thirty a second per bot.
// Telegram counts the thirty over any second, so the bucket lets no burst
// through on top of the rate (a burst of 30 after an idle second would allow
// 60 in the first second), and runs a little under thirty so that network
// jitter never lands a 31st send inside one of Telegram's seconds. An
// operator may override them in the block's limits.
var defaultRates = kit.Rates{
	PerAccount:      28,
	Burst:           1,
	PerConversation: time.Second,
	PerGroup:        3 * time.Second,
}

// webhookBudget is how long Parley takes to answer a webhook request.
// Telegram documents no timeout; it retries any failed delivery on its own
// schedule and holds a chat's later updates meanwhile. Ten seconds rides
// out a NATS leader election on a cluster (a few seconds) while a gateway
// that cannot store answers 503 well before any plausible client timeout,
// so Telegram's retry comes soon.
const webhookBudget = 10 * time.Second

// followUpTimeout bounds the best-effort calls made after events are
// stored (answering callback queries, recording reachability), so that a
// slow platform cannot hold up the poll loop or a webhook request for long.
const followUpTimeout = kit.FollowUpTimeout

// Operator actions shown in health.
const (
	actionBadToken     = "check the bot token with @BotFather and update the telegram.token setting"
	actionStorage      = "check that NATS JetStream is reachable; events are kept by Telegram until they are stored"
	actionWebhookIsSet = "delete the webhook or switch the connector to webhook mode"
	actionOtherPoller  = "stop the other program or deployment polling with this bot token"
	actionUnreachable  = "check the network path to api_url"
)

// Connector is one Telegram bot. Build it with New (through Descriptor).
type Connector struct {
	deps    connectors.Deps
	cfg     settings
	log     *slog.Logger
	api     *bot.Bot
	health  *kit.Health
	inbound *kit.Inbound

	// pollClient is deps.HTTPClient without its overall timeout: a long poll
	// legitimately lasts poll_timeout, and each request is bounded by its
	// own context instead.
	pollClient *http.Client

	retry retryPolicy
}

// retryPolicy paces the connector's own retries; tests shorten it.
type retryPolicy struct {
	initial time.Duration // first wait after a failure
	max     time.Duration // cap of the doubling waits
	slow    time.Duration // wait when only an operator can help (a webhook blocks polling, a refused webhook URL)
}

var defaultRetry = retryPolicy{initial: 250 * time.Millisecond, max: 5 * time.Second, slow: 30 * time.Second}

// New decodes and validates settings and returns a connector. It does no
// I/O: the SDK client is built without its getMe check.
func New(deps connectors.Deps, raw connectors.Settings) (connectors.Connector, error) {
	cfg, err := kit.Decode(raw, Settings.resolve)
	if err != nil {
		return nil, err
	}
	deps = kit.WithDefaults(deps)
	pollClient := *deps.HTTPClient
	pollClient.Timeout = 0

	c := &Connector{
		deps:       deps,
		cfg:        cfg,
		log:        deps.Logger,
		pollClient: &pollClient,
		retry:      defaultRetry,
	}
	c.health = kit.NewHealth(deps)
	c.inbound = kit.NewInbound(deps, c.health)
	api, err := bot.New(string(cfg.token),
		bot.WithServerURL(cfg.apiURL),
		bot.WithSkipGetMe(),
		bot.WithHTTPClient(cfg.pollTimeout, deps.HTTPClient),
		// The SDK reports only errors of its own request writer here, such
		// as a pipe closed by a cancelled send; the call itself returns the
		// error that matters.
		bot.WithErrorsHandler(func(err error) { c.log.Debug("telegram client error", "error", err) }),
		bot.WithDefaultHandler(func(context.Context, *bot.Bot, *models.Update) {}),
	)
	if err != nil {
		return nil, errors.New("token: required")
	}
	c.api = api
	return c, nil
}

// Health returns the last known state without I/O.
func (c *Connector) Health() connectors.Health { return c.health.Get() }

// Policy implements connectors.Connector: Telegram has no reply window,
// and its limits are per bot (the connector's one account) and per chat.
func (c *Connector) Policy(to connectors.Address) connectors.Policy {
	l := c.cfg.rates.Limits(to)
	l.Account = c.cfg.botID
	return connectors.Policy{Limits: l}
}

// Exclusive reports whether Run must run on one instance only: Telegram
// allows one getUpdates poller per token, while webhooks can be served by
// every instance.
func (c *Connector) Exclusive() bool { return c.cfg.mode == ModePolling }

// Run receives updates until ctx ends: in polling mode with its own
// getUpdates loop, in webhook mode by registering the webhook (when
// Deps.PublicURL is known) and waiting, while Webhook's handler does the
// work. It returns nil when ctx ends, and an error only when the token is
// refused.
func (c *Connector) Run(ctx context.Context) error {
	c.health.Begin()
	c.log.Info("telegram connector starting", "mode", c.cfg.mode)
	var err error
	if c.cfg.mode == ModeWebhook {
		err = c.runWebhook(ctx)
	} else {
		err = c.runPolling(ctx)
	}
	c.health.End()
	c.log.Info("telegram connector stopped", "mode", c.cfg.mode)
	return err
}

// runWebhook registers the webhook and waits for ctx, probing storage
// while it reports trouble. Without a public URL the operator registers it;
// Parley cannot guess where it is reachable.
func (c *Connector) runWebhook(ctx context.Context) error {
	if c.deps.PublicURL == "" {
		c.log.Info("no public_url: register the webhook with setWebhook yourself", "path", "/webhooks/"+c.deps.ID)
	} else if err := c.registerWebhook(ctx); err != nil {
		return err
	}
	c.health.Started()
	c.health.WatchStorage(ctx, c.deps.Publisher)
	return nil
}

// registerWebhook calls setWebhook until it succeeds, ctx ends (nil) or the
// token is refused (an error).
func (c *Connector) registerWebhook(ctx context.Context) error {
	hook := strings.TrimRight(c.deps.PublicURL, "/") + "/webhooks/" + c.deps.ID
	// max_connections stays at Telegram's default (40): requests then run
	// concurrently, so two updates of one chat may be stored out of order;
	// events carry the platform's time for consumers that must re-order.
	// Strict per-chat order needs max_connections 1, at the cost of
	// throughput.
	params := &bot.SetWebhookParams{
		URL:            hook,
		SecretToken:    string(c.cfg.webhookSecret),
		AllowedUpdates: c.cfg.allowedUpdates,
	}
	bo := kit.NewBackOff(c.retry.initial, c.retry.max)
	for {
		_, err := c.api.SetWebhook(ctx, params)
		if err == nil {
			c.health.Platform(nil)
			c.log.Info("webhook registered", "url", hook)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		class := connectors.Classify(classify(err))
		if class.Code == normalize.ErrUnauthorized {
			return c.health.Fatal(normalize.StateBadCredentials, "telegram rejected the bot token ("+class.PlatformCode+")", actionBadToken, class)
		}
		c.health.Platform(&kit.Problem{Reason: "registering the webhook: " + err.Error(), Action: "check that public_url is reachable from Telegram over HTTPS"})
		c.log.Warn("registering the webhook", "error", err)
		wait := c.waitFor(class, bo)
		if class.Class == connectors.ClassPermanent {
			// Telegram refused the URL itself: only an operator can fix
			// it, so ask again rarely.
			wait = max(wait, c.retry.slow)
		}
		if !kit.Sleep(ctx, wait) {
			return nil
		}
	}
}

// waitFor is how long to wait after a failed call: the platform's own
// retry_after when it gave one, else the next backoff.
func (c *Connector) waitFor(class *connectors.Error, bo interface{ NextBackOff() time.Duration }) time.Duration {
	if class.Class == connectors.ClassRetryAfter && class.RetryAfter > 0 {
		return class.RetryAfter
	}
	return bo.NextBackOff()
}

// Webhook returns the handler for /webhooks/{id}. In polling mode nothing
// may arrive there: it answers 404.
func (c *Connector) Webhook() http.Handler {
	if c.cfg.mode != ModeWebhook {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			kit.WriteError(w, http.StatusNotFound, "this telegram connector polls for updates; its webhook is off")
		})
	}
	return &kit.Webhook{
		Budget:  webhookBudget,
		MaxBody: maxUpdateBytes,
		Verify:  c.verifyWebhook,
		Parse:   c.parseWebhook,
		After:   c.afterStored,
		Inbound: c.inbound,
		Log:     c.log,
	}
}

// InboundStats implements connectors.InboundCounter.
func (c *Connector) InboundStats() connectors.InboundStats { return c.inbound.Stats() }

// inboundContext is what the mapping needs to know about this connector.
func (c *Connector) inboundContext() inboundContext {
	return inboundContext{Region: c.deps.Region, Connector: c.deps.ID, BotID: c.cfg.botID, ReceivedAt: c.deps.Now()}
}

// afterStored does what updates ask once their events are durable and the
// platform acknowledged: answer the callback query (the user's client shows
// a spinner until then) and record reachability. Both are best effort, and
// stop when ctx ends.
func (c *Connector) afterStored(ctx context.Context, updates []kit.Update) {
	for _, u := range updates {
		if ctx.Err() != nil {
			return
		}
		r, ok := u.Data.(followUp)
		if !ok {
			continue
		}
		if r.CallbackQueryID != "" {
			_, err := c.api.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: r.CallbackQueryID})
			if err != nil && ctx.Err() == nil {
				// A query older than ~15 minutes can no longer be answered;
				// the event is stored all the same.
				c.log.Warn("answering a callback query", "error", err)
			}
		}
		if r.Reachability != nil {
			err := c.deps.Conversations.SetReachable(ctx, r.Reachability.Conversation, r.Reachability.Reachable, r.Reachability.Reason)
			if err != nil && ctx.Err() == nil {
				c.log.Warn("recording reachability", "conversation_id", r.Reachability.Conversation, "error", err)
			}
		}
	}
}

// followUp is what one update asks of the connector once it is stored.
type followUp struct {
	CallbackQueryID string
	Reachability    *reachability
}

// Interface guards.
var (
	_ connectors.Connector        = (*Connector)(nil)
	_ connectors.WebhookConnector = (*Connector)(nil)
	_ connectors.Exclusive        = (*Connector)(nil)
	_ connectors.MediaFetcher     = (*Connector)(nil)
	_ connectors.InboundCounter   = (*Connector)(nil)
)
