package telegram

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/kit"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []connectors.Problem
	}{
		{
			name: "a polling block needs only a token",
			yaml: "token: \"123:abc_DEF-9\"\n",
		},
		{
			name: "a webhook block with its secret is valid",
			yaml: "token: \"123:abc\"\nmode: webhook\nwebhook_secret: s_3-c\napi_url: http://127.0.0.1:8081/\n",
		},
		{
			name: "a missing token is required",
			yaml: "mode: polling\n",
			want: []connectors.Problem{{Path: "token", Message: "required"}},
		},
		{
			name: "a malformed token is refused without echoing it",
			yaml: "token: not-a-token\n",
			want: []connectors.Problem{{Path: "token", Message: "must look like <bot id>:<secret> as issued by @BotFather"}},
		},
		{
			name: "webhook mode needs a secret",
			yaml: "token: \"1:a\"\nmode: webhook\n",
			want: []connectors.Problem{{Path: "webhook_secret", Message: "required in webhook mode"}},
		},
		{
			name: "a secret with characters Telegram refuses is invalid",
			yaml: "token: \"1:a\"\nmode: webhook\nwebhook_secret: \"no spaces\"\n",
			want: []connectors.Problem{{Path: "webhook_secret", Message: "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -"}},
		},
		{
			name: "an unknown mode is refused",
			yaml: "token: \"1:a\"\nmode: push\n",
			want: []connectors.Problem{{Path: "mode", Message: `must be "polling" or "webhook", not "push"`}},
		},
		{
			name: "api_url must be an absolute http URL",
			yaml: "token: \"1:a\"\napi_url: api.telegram.org\n",
			want: []connectors.Problem{{Path: "api_url", Message: "must be an absolute http(s) URL without a query"}},
		},
		{
			name: "poll_timeout must be a sane duration",
			yaml: "token: \"1:a\"\npoll_timeout: 1h\n",
			want: []connectors.Problem{{Path: "poll_timeout", Message: "must be between 0s and 5m0s"}},
		},
		{
			name: "allowed_updates are checked one by one",
			yaml: "token: \"1:a\"\nallowed_updates: [message, messages, message]\n",
			want: []connectors.Problem{
				{Path: "allowed_updates[1]", Message: `unknown update type "messages"`},
				{Path: "allowed_updates[2]", Message: `duplicate update type "message"`},
			},
		},
		{
			name: "every problem is reported at once",
			yaml: "mode: webhook\npoll_timeout: soon\n",
			want: []connectors.Problem{
				{Path: "token", Message: "required"},
				{Path: "webhook_secret", Message: "required in webhook mode"},
				{Path: "poll_timeout", Message: "must be a duration such as 30s"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := validate(connectortest.YAMLSettings(tc.yaml))
			if !slices.Equal(got, tc.want) {
				t.Errorf("validate =\n %v\nwant\n %v", got, tc.want)
			}
		})
	}
}

func TestValidateReportsUnknownKeys(t *testing.T) {
	got := validate(connectortest.YAMLSettings("token: \"1:a\"\nbot_token: x\n"))
	if !slices.ContainsFunc(got, func(p connectors.Problem) bool { return strings.Contains(p.Message, "bot_token") }) {
		t.Errorf("validate = %v, want the unknown key reported", got)
	}
}

func TestValidateReportsEveryProblemBesideAnUnknownKey(t *testing.T) {
	got := validate(connectortest.YAMLSettings("mode: webhook\nbogus: 1\n"))
	for _, path := range []string{"token", "webhook_secret"} {
		if !slices.ContainsFunc(got, func(p connectors.Problem) bool { return p.Path == path }) {
			t.Errorf("validate = %v, want a problem at %s as well as the unknown key", got, path)
		}
	}
}

// pathErrors is a decoding error worded like Parley's config loader's.
type pathErrors struct{}

func (pathErrors) DecodeSettings(any) error {
	return errors.New("bot_token: unknown key (line 2)\nallowed_updates[1]: must be a string (line 4)\nmust be a mapping")
}

func TestValidateKeepsThePathsOfDecodingErrors(t *testing.T) {
	want := []connectors.Problem{
		{Path: "bot_token", Message: "unknown key (line 2)"},
		{Path: "allowed_updates[1]", Message: "must be a string (line 4)"},
		{Message: "must be a mapping"},
		// What did decode (nothing here) is validated too, so every
		// problem of the block is reported at once.
		{Path: "token", Message: "required"},
	}
	if got := validate(pathErrors{}); !slices.Equal(got, want) {
		t.Errorf("validate =\n %v\nwant\n %v", got, want)
	}
}

func TestDefaultsApply(t *testing.T) {
	cfg, err := kit.Decode(connectortest.YAMLSettings("token: \"77:secret\"\n"), Settings.resolve)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mode != ModePolling || cfg.apiURL != DefaultAPIURL || cfg.pollTimeout != 30*time.Second || cfg.botID != "77" {
		t.Errorf("defaults: %+v", cfg)
	}
	if !slices.Equal(cfg.allowedUpdates, defaultAllowedUpdates) {
		t.Errorf("allowed_updates %v, want the defaults", cfg.allowedUpdates)
	}
	if cfg.rates != defaultRates {
		t.Errorf("rates %+v, want Telegram's %+v", cfg.rates, defaultRates)
	}
}

func TestLimitsOverrideTheDefaults(t *testing.T) {
	cfg, err := kit.Decode(connectortest.YAMLSettings("token: \"77:secret\"\nlimits: {per_account: 5, per_group: 10s}\n"), Settings.resolve)
	if err != nil {
		t.Fatal(err)
	}
	want := defaultRates
	want.PerAccount, want.PerGroup = 5, 10*time.Second
	if cfg.rates != want {
		t.Errorf("rates %+v, want %+v", cfg.rates, want)
	}
	problems := validate(connectortest.YAMLSettings("token: \"77:secret\"\nlimits: {burst: 0, per_conversation: soon}\n"))
	var paths []string
	for _, p := range problems {
		paths = append(paths, p.Path)
	}
	if !slices.Equal(paths, []string{"limits.burst", "limits.per_conversation"}) {
		t.Errorf("problems %v, want limits.burst and limits.per_conversation", problems)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	s := Settings{Token: "123:very-secret", WebhookSecret: "hook-secret"}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("settings", "settings", s, "token", s.Token)
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%s", s.Token), logged.String(), string(js)} {
		if strings.Contains(out, "very-secret") || strings.Contains(out, "hook-secret") {
			t.Errorf("a secret printed: %s", out)
		}
	}
}

func TestSampleIsAValidBlock(t *testing.T) {
	// The sample's ${ENV} references are expanded by the config loader.
	block := strings.ReplaceAll(Descriptor.Sample, "${TELEGRAM_TOKEN}", "123:abc")
	if problems := validate(connectortest.YAMLSettings(block)); len(problems) > 0 {
		t.Errorf("the sample has problems: %v", problems)
	}
	withSecret := strings.Replace(block, "# webhook_secret: ${TELEGRAM_WEBHOOK_SECRET}", "webhook_secret: abc", 1)
	withSecret = strings.Replace(withSecret, "mode: polling", "mode: webhook", 1)
	if problems := validate(connectortest.YAMLSettings(withSecret)); len(problems) > 0 {
		t.Errorf("the sample in webhook mode has problems: %v", problems)
	}
}
