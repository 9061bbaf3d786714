package config

import (
	"strings"
	"testing"
)

// everyVariable stands in for an environment in which every variable the
// example references is set; the value marks where it came from.
func everyVariable(name string) (string, bool) { return "env:" + name, true }

func TestExampleParsesAndValidates(t *testing.T) {
	tests := []struct {
		name    string
		samples []Sample
		want    []string // connector ids
	}{
		{"no connector", nil, nil},
		{"two platforms", []Sample{
			{Platform: "alpha", Block: "# the alpha platform\ntoken: ${ALPHA_TOKEN}\n\nmode: fast   # or slow\n"},
			{Platform: "beta", Block: "accounts:\n  - id: \"1\"\n    secret: ${BETA_SECRET}\n"},
		}, []string{"alpha-eu", "beta-eu"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := Example(tc.samples...)
			cfg, err := Parse([]byte(text), WithLookupEnv(everyVariable))
			if err != nil {
				t.Fatalf("the example does not parse:\n%v\n%s", err, text)
			}
			if len(cfg.API.Tokens) != 1 || cfg.API.Tokens[0].Reveal() != "env:PARLEY_API_TOKEN" {
				t.Errorf("api.tokens should come from PARLEY_API_TOKEN")
			}
			var got []string
			for i, c := range cfg.Connectors {
				got = append(got, c.ID)
				if c.Platform != tc.samples[i].Platform || c.Region != "eu" || !c.Enabled {
					t.Errorf("connector %s = %s in %s (enabled %v)", c.ID, c.Platform, c.Region, c.Enabled)
				}
				var settings map[string]any
				if err := c.DecodeSettings(&settings); err != nil {
					t.Errorf("connector %s: %v", c.ID, err)
				}
				if len(settings) == 0 {
					t.Errorf("connector %s has an empty block", c.ID)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("connectors = %v, want %v", got, tc.want)
			}
		})
	}
}
