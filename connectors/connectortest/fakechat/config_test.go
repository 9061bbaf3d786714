package fakechat

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
)

const validSettings = `
app_secret: s3cret
verify_token: v3rify
accounts:
  - id: "1001"
    access_token: tok-1001
  - id: 1002
    access_token: tok-1002
`

func TestSettingsDefaults(t *testing.T) {
	cfg, err := decode(yamlSettings(validSettings))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.apiURL != DefaultAPIURL {
		t.Errorf("api_url = %q, want the default", cfg.apiURL)
	}
	if cfg.rates != defaultRates {
		t.Errorf("rates = %+v, want fakechat's %+v", cfg.rates, defaultRates)
	}
	if len(cfg.tokens) != 2 || cfg.tokens["1002"].Reveal() != "tok-1002" {
		t.Errorf("tokens = %v (a numeric id must read as its digits)", cfg.tokens)
	}
}

func TestSettingsOverrides(t *testing.T) {
	cfg, err := decode(yamlSettings(validSettings + `
api_url: http://127.0.0.1:8081/
limits: {per_account: 5, burst: 2, per_conversation: 1s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.apiURL != "http://127.0.0.1:8081" {
		t.Errorf("api_url = %q, want it without the trailing slash", cfg.apiURL)
	}
	if cfg.rates.PerAccount != 5 || cfg.rates.Burst != 2 || cfg.rates.PerConversation != time.Second {
		t.Errorf("rates = %+v", cfg.rates)
	}
}

func TestSettingsProblems(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		paths []string
	}{
		{"an empty block", ``, []string{"app_secret", "verify_token", "accounts"}},
		{"no accounts", "app_secret: a\nverify_token: b\naccounts: []\n", []string{"accounts"}},
		{"an account without id and token", "app_secret: a\nverify_token: b\naccounts: [{}]\n", []string{"accounts[0].id", "accounts[0].access_token"}},
		{"a bad account id", "app_secret: a\nverify_token: b\naccounts: [{id: 'a b', access_token: t}]\n", []string{"accounts[0].id"}},
		{"a duplicate account", "app_secret: a\nverify_token: b\naccounts: [{id: x, access_token: t}, {id: x, access_token: u}]\n", []string{"accounts[1].id"}},
		{"a relative api_url", validSettings + "api_url: /api\n", []string{"api_url"}},
		{"an ftp api_url", validSettings + "api_url: ftp://fakechat.example\n", []string{"api_url"}},
		{"bad limits", validSettings + "limits: {burst: 0, per_account: -1, per_group: soon}\n", []string{"limits.burst", "limits.per_account", "limits.per_group"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := validate(yamlSettings(tt.yaml))
			var paths []string
			for _, p := range got {
				paths = append(paths, p.Path)
			}
			for _, want := range tt.paths {
				if !slices.Contains(paths, want) {
					t.Errorf("problems %v lack %q", got, want)
				}
			}
			if len(got) != len(tt.paths) {
				t.Errorf("problems %v, want exactly %v", got, tt.paths)
			}
			if _, err := New(connectors.Deps{}, yamlSettings(tt.yaml)); err == nil {
				t.Error("New accepted the settings")
			}
		})
	}
}

// An unknown key and an invalid value are reported together, the key with
// its path.
func TestSettingsUnknownKeyIsAProblem(t *testing.T) {
	got := validate(yamlSettings("app_secret: a\nverify_token: b\naccounts: [{id: x, access_token: t, page: 1}]\nmode: webhook\n"))
	text := fmt.Sprint(got)
	for _, want := range []string{"page", "mode"} {
		if !strings.Contains(text, want) {
			t.Errorf("problems %s do not name the unknown key %q", text, want)
		}
	}
	if _, err := New(connectors.Deps{}, yamlSettings("app_secret: a\nverify_token: b\naccounts: [{id: x, access_token: t}]\nmode: webhook\n")); err == nil {
		t.Fatal("New accepted an unknown key")
	}
}

func TestSettingsNeverShowSecrets(t *testing.T) {
	cfg, err := decode(yamlSettings("app_secret: topsecret-app\nverify_token: topsecret-verify\naccounts: [{id: x, access_token: topsecret-token}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	printed := fmt.Sprintf("%v %+v %#v", cfg.appSecret, cfg.verifyToken, cfg.tokens)
	if strings.Contains(printed, "topsecret") {
		t.Fatalf("a secret was printed: %s", printed)
	}
	problems := validate(yamlSettings("app_secret: topsecret\nverify_token: v\naccounts: [{id: 'bad id!', access_token: topsecret}]\n"))
	if strings.Contains(fmt.Sprint(problems), "topsecret") {
		t.Fatalf("a secret is in the problems: %v", problems)
	}
}

func TestSampleIsValid(t *testing.T) {
	if problems := Descriptor.Validate(yamlSettings(Descriptor.Sample)); len(problems) != 0 {
		t.Fatalf("sample.yaml has problems: %v", problems)
	}
}
