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
	for _, d := range All() {
		t.Run(d.Platform, func(t *testing.T) {
			if d.Platform == "" || strings.ToLower(d.Platform) != d.Platform {
				t.Errorf("platform %q must be a lower-case name", d.Platform)
			}
			if seen[d.Platform] {
				t.Errorf("platform %q registered twice", d.Platform)
			}
			seen[d.Platform] = true
			if d.Name == "" {
				t.Error("Name is empty")
			}
			if d.New == nil {
				t.Error("New is nil")
			}
			if d.Validate == nil {
				t.Error("Validate is nil")
			}
			var sample map[string]any
			if err := yaml.Unmarshal([]byte(d.Sample), &sample); err != nil {
				t.Errorf("Sample is not YAML: %v", err)
			}
			if len(sample) == 0 {
				t.Error("Sample is empty")
			}
			if d.Limits.PerAccount < 0 || d.Limits.PerConversation < 0 {
				t.Error("Limits must not be negative")
			}
			if got, ok := Lookup(d.Platform); !ok || got.Platform != d.Platform {
				t.Errorf("Lookup(%q) = %v, %v", d.Platform, got.Platform, ok)
			}
		})
	}
	if _, ok := Lookup("no-such-platform"); ok {
		t.Error("Lookup found a platform that is not registered")
	}
}
