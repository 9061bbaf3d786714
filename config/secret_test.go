package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/parley-gateway/parley/internal/secret"
)

// TestConfigNeverPrintsItsSecrets prints a whole configuration every way an
// operator's tooling might and finds no secret in it.
func TestConfigNeverPrintsItsSecrets(t *testing.T) {
	const value = "hunter2"
	cfg := Default()
	cfg.NATS.User = "parley"
	cfg.NATS.Password = secret.String(value)
	cfg.NATS.Token = secret.String(value)
	cfg.API.Tokens = []secret.String{value, value}
	jsonOut, _ := json.Marshal(cfg)
	yamlOut, _ := yaml.Marshal(cfg)
	for name, out := range map[string]string{
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#v":  fmt.Sprintf("%#v", cfg),
		"json": string(jsonOut),
		"yaml": string(yamlOut),
	} {
		if strings.Contains(out, value) {
			t.Errorf("%s prints a secret: %s", name, out)
		}
		if !strings.Contains(out, secret.Redacted) {
			t.Errorf("%s does not say %s: %s", name, secret.Redacted, out)
		}
	}
}
