package fakechat

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/secret"
)

// DefaultAPIURL is the messages API of fakechat when api_url is not set.
const DefaultAPIURL = "https://api.fakechat.example"

// Fakechat's documented sending limits: 50 messages a second per account,
// 10 at once. They are the defaults the operator's limits override.
var defaultRates = kit.Rates{PerAccount: 50, Burst: 10}

// window is fakechat's reply window, Meta's: 24 hours after the
// customer's last message, 7 days for a human agent's reply tagged
// HUMAN_AGENT.
var window = kit.Window{Standard: 24 * time.Hour, HumanAgent: 7 * 24 * time.Hour, HumanAgentTag: humanAgentTag}

// humanAgentTag is the message tag of a reply sent past the standard
// window by a human agent.
const humanAgentTag = "HUMAN_AGENT"

// Settings is the fakechat block of a connector's configuration: one app
// serving several accounts.
type Settings struct {
	// AppSecret signs every webhook request (X-Fakechat-Signature).
	AppSecret secret.String `yaml:"app_secret"`
	// VerifyToken is what the operator typed into fakechat's developer
	// console; the handshake GET must repeat it.
	VerifyToken secret.String `yaml:"verify_token"`
	// Accounts are the fakechat accounts the app serves, each with its own
	// access token for sending.
	Accounts []AccountSettings `yaml:"accounts"`
	// APIURL is the messages API base URL; a simulator goes here.
	APIURL string `yaml:"api_url"`
	// Limits overrides fakechat's sending limits.
	Limits kit.LimitSettings `yaml:"limits"`
}

// AccountSettings is one fakechat account.
type AccountSettings struct {
	ID          string        `yaml:"id"`
	AccessToken secret.String `yaml:"access_token"`
}

// config is Settings with defaults applied and values checked.
type config struct {
	appSecret   secret.String
	verifyToken secret.String
	tokens      map[string]secret.String // access token by account id
	apiURL      string                   // without a trailing slash
	rates       kit.Rates
}

// accountPattern is what an account id may be: it is a path segment of
// the messages API.
var accountPattern = regexp.MustCompile(`^[0-9A-Za-z_-]{1,64}$`)

// validate is the Descriptor's Validate.
func validate(raw connectors.Settings) []connectors.Problem {
	return kit.Validate(raw, func(s Settings) []connectors.Problem {
		_, problems := s.resolve()
		return problems
	})
}

// decode is the settings step of New.
func decode(raw connectors.Settings) (config, error) {
	return kit.Decode(raw, Settings.resolve)
}

// resolve applies defaults and reports every invalid setting at once, with
// paths relative to the block. Secrets are never echoed.
func (s Settings) resolve() (config, []connectors.Problem) {
	var problems []connectors.Problem
	add := func(path, format string, args ...any) {
		problems = append(problems, connectors.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	cfg := config{
		appSecret:   s.AppSecret,
		verifyToken: s.VerifyToken,
		tokens:      map[string]secret.String{},
		apiURL:      strings.TrimRight(s.APIURL, "/"),
	}
	if strings.TrimSpace(s.AppSecret.Reveal()) == "" {
		add("app_secret", "required")
	}
	if strings.TrimSpace(s.VerifyToken.Reveal()) == "" {
		add("verify_token", "required")
	}

	if len(s.Accounts) == 0 {
		add("accounts", "at least one account is required")
	}
	for i, a := range s.Accounts {
		path := fmt.Sprintf("accounts[%d]", i)
		switch _, dup := cfg.tokens[a.ID]; {
		case a.ID == "":
			add(path+".id", "required")
		case !accountPattern.MatchString(a.ID):
			add(path+".id", "must be 1 to 64 characters of 0-9, A-Z, a-z, _ and -")
		case dup:
			add(path+".id", "duplicate account %q", a.ID)
		}
		if strings.TrimSpace(a.AccessToken.Reveal()) == "" {
			add(path+".access_token", "required")
		}
		cfg.tokens[a.ID] = a.AccessToken
	}

	if cfg.apiURL == "" {
		cfg.apiURL = DefaultAPIURL
	}
	if u, err := url.Parse(cfg.apiURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		add("api_url", "must be an absolute http(s) URL without a query")
	}

	rates, more := s.Limits.Apply(defaultRates, "limits")
	cfg.rates = rates
	problems = append(problems, more...)
	return cfg, problems
}
