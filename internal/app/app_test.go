package app

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/config"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/registry"
	"github.com/parley-gateway/parley/internal/wait"
)

func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), config.WithLookupEnv(func(string) (string, bool) { return "", false }))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func configYAML(dataDir, token string) string {
	return configYAMLListen(dataDir, token, "")
}

func configYAMLListen(dataDir, token, natsListen string) string {
	return `
data_dir: "` + dataDir + `"
nats: {embedded: {sync: interval, listen: "` + natsListen + `"}}
http: {listen: "127.0.0.1:0"}
api: {tokens: ["t"]}
connectors:
  - id: fc-one
    platform: fakechat
    region: eu
    fakechat: {app_secret: "` + token + `", verify_token: v, accounts: [{id: "1001", access_token: t}], api_url: "http://127.0.0.1:9"}
`
}

// platforms is the registry the app tests run: the fake connector alone,
// as a test adds a platform with one line.
var platforms = registry.List{{Descriptor: fakechat.Descriptor, Demo: fakechatsim.NewDemo}}

// A connector that cannot be built must leave nothing running: the
// embedded NATS server New had started is shut down, so its listener's port
// is free again, and the same data directory opens again at once.
func TestNewLeavesNothingRunningWhenAConnectorCannotBeBuilt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()

	// Bypass config validation, as a config built in code could.
	bad := parseConfig(t, configYAMLListen(dir, "s3cret", natsAddr))
	bad.Connectors[0].Settings.Content[1].Value = ""
	if _, err := New(ctx, bad, Options{Platforms: platforms}); err == nil || !strings.Contains(err.Error(), "app_secret") {
		t.Fatalf("New with no app secret = %v, want an error naming app_secret", err)
	}
	ln, err = net.Listen("tcp", natsAddr)
	if err != nil {
		t.Fatalf("the embedded NATS server of the failed New still holds %s: %v", natsAddr, err)
	}
	ln.Close()

	good := parseConfig(t, configYAMLListen(dir, "s3cret", natsAddr))
	a, err := New(ctx, good, Options{Platforms: platforms})
	if err != nil {
		t.Fatalf("New after a failed New on the same data dir: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()

	wait.For(t, 10*time.Second, "the gateway to be ready", func() bool {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancel")
	}
}

func TestNewRefusesARegionNoConnectorNames(t *testing.T) {
	cfg := parseConfig(t, configYAML(filepath.Join(t.TempDir(), "data"), "s3cret"))
	_, err := New(t.Context(), cfg, Options{Regions: []string{"mars"}, Platforms: platforms})
	if err == nil || !strings.Contains(err.Error(), "mars") {
		t.Fatalf("New = %v, want an error naming the region", err)
	}
}
