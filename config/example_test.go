package config

import (
	"slices"
	"strings"
	"testing"
)

// everyVariable stands in for an environment in which every variable the
// examples reference is set; the value marks where it came from.
func everyVariable(name string) (string, bool) { return "env:" + name, true }

func TestExampleParsesAndValidates(t *testing.T) {
	for _, platform := range append([]string{""}, platforms...) {
		t.Run("platform "+platform, func(t *testing.T) {
			text, err := Example(platform)
			if err != nil {
				t.Fatalf("Example: %v", err)
			}
			cfg, err := Parse([]byte(text), WithLookupEnv(everyVariable))
			if err != nil {
				t.Fatalf("the example does not parse:\n%v", err)
			}
			if len(cfg.API.Tokens) != 1 || cfg.API.Tokens[0].Reveal() != "env:PARLEY_API_TOKEN" {
				t.Errorf("api.tokens should come from PARLEY_API_TOKEN")
			}
			var got []string
			for _, c := range cfg.Connectors {
				if platform != "" && c.Platform != platform {
					t.Errorf("connector %s has platform %s", c.ID, c.Platform)
				}
				got = append(got, c.Platform)
				var settings map[string]any
				if err := c.DecodeSettings(&settings); err != nil {
					t.Errorf("connector %s: %v", c.ID, err)
				}
				checkSecretsAreReferences(t, c.ID, settings)
			}
			want := []string{platform}
			switch platform {
			case "":
				want = []string{Telegram, Messenger, Instagram, Slack, WhatsApp, WhatsApp}
			case WhatsApp:
				want = []string{WhatsApp, WhatsApp}
			}
			if !slices.Equal(got, want) {
				t.Errorf("connector platforms = %v, want %v", got, want)
			}
		})
	}
}

// checkSecretsAreReferences fails when a secret-looking key in an example
// holds a literal instead of an ${ENV} reference.
func checkSecretsAreReferences(t *testing.T, id string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			if s, ok := val.(string); ok && (strings.HasSuffix(k, "token") || strings.HasSuffix(k, "secret")) &&
				!strings.HasPrefix(s, "env:") {
				t.Errorf("connector %s: %s is not an ${ENV} reference", id, k)
			}
			checkSecretsAreReferences(t, id, val)
		}
	case []any:
		for _, item := range v {
			checkSecretsAreReferences(t, id, item)
		}
	}
}

func TestExampleShowsBothWhatsAppTransports(t *testing.T) {
	text, err := Example(WhatsApp)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"transport: web", "transport: cloud", "store:", "numbers:"} {
		if !strings.Contains(text, want) {
			t.Errorf("the WhatsApp example lacks %q", want)
		}
	}
}

func TestExampleRejectsAnUnknownPlatform(t *testing.T) {
	if _, err := Example("discord"); err == nil {
		t.Error("Example(discord) succeeded")
	}
}
