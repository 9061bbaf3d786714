package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/registry"
	"github.com/parley-gateway/parley/normalize"
)

// pairchat is a platform that links devices, as WhatsApp's multi-device
// protocol does: its Pair shows a code and stores a session file.
type pairchat struct{ deps connectors.Deps }

func (c *pairchat) Run(ctx context.Context) error               { <-ctx.Done(); return nil }
func (c *pairchat) Health() connectors.Health                   { return connectors.Health{} }
func (c *pairchat) Policy(connectors.Address) connectors.Policy { return connectors.Policy{} }
func (c *pairchat) SendPart(context.Context, connectors.Address, connectors.Part) (connectors.SentPart, error) {
	return connectors.SentPart{}, connectors.Permanent(normalize.ErrUnsupported, "", errors.New("pairchat sends nothing"))
}
func (c *pairchat) Plan(*normalize.Reply, connectors.Address, connectors.Admission) ([]connectors.Part, error) {
	return nil, connectors.Permanent(normalize.ErrUnsupported, "", errors.New("pairchat sends nothing"))
}

func (c *pairchat) Pair(ctx context.Context, req connectors.PairRequest) error {
	if err := c.deps.Publisher.Publish(ctx); err == nil {
		return errors.New("the publisher pretends to work while pairing")
	}
	if req.Phone != "" {
		req.Show(connectors.PairPrompt{Code: "ABCD-1234"})
	} else {
		req.Show(connectors.PairPrompt{QR: "2@parley-test-ref,key,adv"})
	}
	if err := os.MkdirAll(c.deps.DataDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.deps.DataDir, "session"), []byte("linked "+req.Phone), 0o600)
}

var pairchatPlatform = registry.Platform{Descriptor: connectors.Descriptor{
	Platform: "pairchat", Name: "Pairchat",
	New: func(deps connectors.Deps, _ connectors.Settings) (connectors.Connector, error) {
		return &pairchat{deps: deps}, nil
	},
	Validate: func(connectors.Settings) []connectors.Problem { return nil },
	Sample:   "device: {}\n",
}}

func TestPairLinksADeviceForAnyConnectorThatPairs(t *testing.T) {
	data := t.TempDir()
	cfg := writeConfig(t, "data_dir: "+data+"\nconnectors:\n"+
		"  - {id: pc-eu, platform: pairchat, region: eu, pairchat: {}}\n"+
		"  - {id: tg-eu, platform: telegram, region: eu, telegram: {token: \"1:abc\"}}\n")
	platforms := append(registry.All(), pairchatPlatform)
	session := filepath.Join(data, "connectors", "pc-eu", "session")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
		session  string // content of the session file afterwards, "" for none
	}{
		{"a QR code", []string{"pair", "pairchat", "--connector", "pc-eu"}, exitOK, "▀", "", "linked "},
		{"a pairing code for a phone", []string{"pair", "pairchat", "--connector", "pc-eu", "--phone", "+34600111222"}, exitOK, "ABCD-1234", "", "linked +34600111222"},
		{"a platform without pairing", []string{"pair", "telegram", "--connector", "tg-eu"}, exitUsage, "", "nothing to pair", ""},
		{"the wrong platform for the connector", []string{"pair", "pairchat", "--connector", "tg-eu"}, exitUsage, "", "is a telegram connector", ""},
		{"an unknown connector", []string{"pair", "pairchat", "--connector", "nope"}, exitUsage, "", `no connector "nope"`, ""},
		{"a phone that is not E.164", []string{"pair", "pairchat", "--connector", "pc-eu", "--phone", "600 111"}, exitUsage, "", "E.164", ""},
		{"no connector flag", []string{"pair", "pairchat"}, exitUsage, "", "--connector is required", ""},
		{"an unknown platform", []string{"pair", "icq", "--connector", "pc-eu"}, exitUsage, "", "not built into this binary", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(session)
			env, out, errOut := testEnv(nil)
			env.platforms = platforms
			code := run(t.Context(), env, append(tc.args, "--config", cfg))
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			if !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errOut.String(), tc.wantErr) {
				t.Errorf("stdout %q / stderr %q, want %q / %q", out, errOut, tc.wantOut, tc.wantErr)
			}
			got, err := os.ReadFile(session)
			if tc.session == "" && err == nil {
				t.Errorf("a session was stored: %q", got)
			}
			if tc.session != "" && string(got) != tc.session {
				t.Errorf("session %q (%v), want %q", got, err, tc.session)
			}
		})
	}
}
