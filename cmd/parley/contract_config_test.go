package main

// CONTRACT §2, configuration: the shared gateway takes every secret from
// the environment and must never show one. (The CLI checks of config
// check and example are §1, in contract_cli_test.go.)

import (
	"bytes"
	"strings"
	"testing"
)

// gwSecretsHidden searches serve's whole output and every stored event for the secrets (§2).
func gwSecretsHidden(t *testing.T, g *gateway) {
	logs := g.proc.output()
	for _, secret := range []string{"CONTRACT-BOT-SECRET", gwSecret, gwAPIToken} {
		if strings.Contains(logs, secret) {
			i := strings.Index(logs, secret)
			t.Errorf("§2 \"Secrets never appear in logs\": %q appears in serve's output: …%s…", secret, logs[max(0, i-200):min(len(logs), i+50)])
		}
		for _, m := range g.events.all() {
			if bytes.Contains(m.Raw, []byte(secret)) {
				t.Errorf("§2 secret %q appears in event %s", secret, m.E.ID)
			}
		}
	}
}
