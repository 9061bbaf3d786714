package main

import (
	"strings"
	"testing"
)

// config check accepts a file without api.tokens (a webhook-only gateway is
// legitimate) but warns, on stderr, that /v1 is then closed to everyone.
func TestConfigCheckWarnsThatAnEmptyTokenListClosesV1(t *testing.T) {
	const warning = "warning: api.tokens is empty: /v1 (replies, conversations, media) answers 401 to everyone\n"
	connector := "connectors:\n  - {id: tg-eu, platform: telegram, region: eu, telegram: {token: \"1:abc\"}}\n"
	for _, tc := range []struct {
		name   string
		api    string
		warned bool
	}{
		{"absent", "", true},
		{"empty", "api: {tokens: []}\n", true},
		{"set", "api: {tokens: [t]}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, out, errOut := testEnv(nil)
			code := run(t.Context(), env, []string{"config", "check", "--config", writeConfig(t, tc.api+connector)})
			if code != exitOK || !strings.Contains(out.String(), "is valid") {
				t.Fatalf("exit %d, want %d with the file valid\n%s%s", code, exitOK, out, errOut)
			}
			if got := strings.Contains(errOut.String(), warning); got != tc.warned {
				t.Errorf("warned = %v, want %v; stderr:\n%s", got, tc.warned, errOut)
			}
		})
	}
}
