package telegram

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/secret"
)

// Modes of receiving updates.
const (
	ModePolling = "polling"
	ModeWebhook = "webhook"
)

// Defaults applied to settings left out of the block.
const (
	DefaultAPIURL      = "https://api.telegram.org"
	DefaultPollTimeout = 30 * time.Second

	// maxPollTimeout keeps a long poll well inside the idle timeouts of
	// proxies between Parley and Telegram.
	maxPollTimeout = 5 * time.Minute
)

// defaultAllowedUpdates are the update types requested when the block does
// not list its own. Telegram remembers the last list it was given and
// leaves message_reaction out unless asked, so Parley always sends one.
var defaultAllowedUpdates = []string{
	models.AllowedUpdateMessage,
	models.AllowedUpdateEditedMessage,
	models.AllowedUpdateChannelPost,
	models.AllowedUpdateEditedChannelPost,
	models.AllowedUpdateCallbackQuery,
	models.AllowedUpdateMessageReaction,
	models.AllowedUpdateMyChatMember,
	models.AllowedUpdateBusinessMessage,
	models.AllowedUpdateEditedBusinessMessage,
	models.AllowedUpdateDeletedBusinessMessages,
}

// knownUpdates is every update type the Bot API accepts in allowed_updates.
var knownUpdates = []string{
	models.AllowedUpdateMessage,
	models.AllowedUpdateEditedMessage,
	models.AllowedUpdateChannelPost,
	models.AllowedUpdateEditedChannelPost,
	models.AllowedUpdateBusinessConnection,
	models.AllowedUpdateBusinessMessage,
	models.AllowedUpdateEditedBusinessMessage,
	models.AllowedUpdateDeletedBusinessMessages,
	models.AllowedUpdateMessageReaction,
	models.AllowedUpdateMessageReactionCount,
	models.AllowedUpdateInlineQuery,
	models.AllowedUpdateChosenInlineResult,
	models.AllowedUpdateCallbackQuery,
	models.AllowedUpdateShippingQuery,
	models.AllowedUpdatePreCheckoutQuery,
	models.AllowedUpdatePurchasedPaidMedia,
	models.AllowedUpdatePoll,
	models.AllowedUpdatePollAnswer,
	models.AllowedUpdateMyChatMember,
	models.AllowedUpdateChatMember,
	models.AllowedUpdateChatJoinRequest,
	models.AllowedUpdateChatBoost,
	models.AllowedUpdateRemovedChatBoost,
}

// Settings is the telegram block of a connector's configuration.
type Settings struct {
	// Token is the bot token from @BotFather, "<bot id>:<secret>".
	Token secret.String `yaml:"token"`
	// Mode is how updates arrive: "polling" (getUpdates; one instance at a
	// time) or "webhook" (Telegram POSTs to /webhooks/{id}).
	Mode string `yaml:"mode"`
	// WebhookSecret is the secret_token Telegram sends back in every
	// webhook request; required in webhook mode.
	WebhookSecret secret.String `yaml:"webhook_secret"`
	// APIURL is the Bot API base URL; a simulator or a local Bot API server
	// goes here.
	APIURL string `yaml:"api_url"`
	// PollTimeout is the long-poll timeout of getUpdates, a Go duration
	// ("30s").
	PollTimeout string `yaml:"poll_timeout"`
	// AllowedUpdates lists the update types to receive; empty means the
	// list in sample.yaml: every kind Parley maps, reactions included.
	AllowedUpdates []string `yaml:"allowed_updates"`
	// Limits overrides Telegram's flood limits (defaultRates), for a bot
	// with raised limits or a policy of one's own.
	Limits kit.LimitSettings `yaml:"limits"`
}

// settings is Settings with defaults applied and values parsed.
type settings struct {
	token          secret.String
	botID          string
	mode           string
	webhookSecret  secret.String
	apiURL         string
	pollTimeout    time.Duration
	allowedUpdates []string
	rates          kit.Rates
}

var (
	tokenPattern  = regexp.MustCompile(`^([0-9]{1,20}):[A-Za-z0-9_-]{1,128}$`)
	secretPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)
)

// validate checks settings without building a connector; problem paths are
// relative to the telegram block. A block that does not decode cleanly (an
// unknown key) is still validated as far as it decoded, so every problem is
// reported at once.
func validate(raw connectors.Settings) []connectors.Problem {
	return kit.Validate(raw, func(s Settings) []connectors.Problem {
		_, problems := s.resolve()
		return problems
	})
}

// resolve applies defaults and reports every invalid setting at once.
func (s Settings) resolve() (settings, []connectors.Problem) {
	var problems []connectors.Problem
	add := func(path, format string, args ...any) {
		problems = append(problems, connectors.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	out := settings{
		token:          secret.String(strings.TrimSpace(s.Token.Reveal())),
		mode:           s.Mode,
		webhookSecret:  s.WebhookSecret,
		apiURL:         strings.TrimRight(s.APIURL, "/"),
		pollTimeout:    DefaultPollTimeout,
		allowedUpdates: slices.Clone(s.AllowedUpdates),
	}

	switch m := tokenPattern.FindStringSubmatch(string(out.token)); {
	case out.token == "":
		add("token", "required")
	case m == nil:
		// Never echo the value: it is a secret even when malformed.
		add("token", "must look like <bot id>:<secret> as issued by @BotFather")
	default:
		out.botID = m[1]
	}

	if out.mode == "" {
		out.mode = ModePolling
	}
	switch out.mode {
	case ModePolling, ModeWebhook:
	default:
		add("mode", "must be %q or %q, not %q", ModePolling, ModeWebhook, out.mode)
	}

	switch {
	case out.webhookSecret == "" && out.mode == ModeWebhook:
		add("webhook_secret", "required in webhook mode")
	case out.webhookSecret != "" && !secretPattern.MatchString(string(out.webhookSecret)):
		add("webhook_secret", "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -")
	}

	if out.apiURL == "" {
		out.apiURL = DefaultAPIURL
	}
	if u, err := url.Parse(out.apiURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		add("api_url", "must be an absolute http(s) URL without a query")
	}

	if s.PollTimeout != "" {
		d, err := time.ParseDuration(s.PollTimeout)
		switch {
		case err != nil:
			add("poll_timeout", "must be a duration such as 30s")
		case d < 0 || d > maxPollTimeout:
			add("poll_timeout", "must be between 0s and %s", maxPollTimeout)
		default:
			out.pollTimeout = d
		}
	}

	if len(out.allowedUpdates) == 0 {
		out.allowedUpdates = slices.Clone(defaultAllowedUpdates)
	}
	var limitProblems []connectors.Problem
	out.rates, limitProblems = s.Limits.Apply(defaultRates, "limits")
	problems = append(problems, limitProblems...)

	seen := map[string]bool{}
	for i, u := range out.allowedUpdates {
		switch {
		case !slices.Contains(knownUpdates, u):
			add(fmt.Sprintf("allowed_updates[%d]", i), "unknown update type %q", u)
		case seen[u]:
			add(fmt.Sprintf("allowed_updates[%d]", i), "duplicate update type %q", u)
		}
		seen[u] = true
	}
	return out, problems
}
