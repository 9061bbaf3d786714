package registry

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestEveryConnectorIsComplete fails when a registered connector lacks a
// piece the rest of Parley relies on, so a half-added platform cannot land.
func TestEveryConnectorIsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range All() {
		t.Run(p.Platform, func(t *testing.T) {
			if p.Platform == "" || strings.ToLower(p.Platform) != p.Platform {
				t.Errorf("platform %q must be a lower-case name", p.Platform)
			}
			if seen[p.Platform] {
				t.Errorf("platform %q registered twice", p.Platform)
			}
			seen[p.Platform] = true
			if p.Name == "" {
				t.Error("Name is empty")
			}
			if p.New == nil {
				t.Error("New is nil")
			}
			if p.Validate == nil {
				t.Error("Validate is nil")
			}
			if p.Demo == nil {
				t.Error("Demo is nil: `parley demo` must drive every platform against its simulator")
			}
			var sample map[string]any
			if err := yaml.Unmarshal([]byte(p.Sample), &sample); err != nil {
				t.Errorf("Sample is not YAML: %v", err)
			}
			if len(sample) == 0 {
				t.Error("Sample is empty")
			}
			checkSecretsAreReferences(t, sample)
			if got, ok := Lookup(p.Platform); !ok || got.Platform != p.Platform {
				t.Errorf("Lookup(%q) = %v, %v", p.Platform, got.Platform, ok)
			}
		})
	}
	if _, ok := Lookup("no-such-platform"); ok {
		t.Error("Lookup found a platform that is not registered")
	}
}

// checkSecretsAreReferences fails when a secret-looking key of a sample
// holds a literal instead of an ${ENV} reference: samples are copied into
// real configurations.
func checkSecretsAreReferences(t *testing.T, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			if s, ok := val.(string); ok && (strings.HasSuffix(k, "token") || strings.HasSuffix(k, "secret")) &&
				!strings.HasPrefix(s, "${") {
				t.Errorf("%s is %q, not an ${ENV} reference", k, s)
			}
			checkSecretsAreReferences(t, val)
		}
	case []any:
		for _, item := range v {
			checkSecretsAreReferences(t, item)
		}
	}
}
