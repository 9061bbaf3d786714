package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/parley-gateway/parley/connectors/connectortest/fakechat"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/registry"
)

// withFakechat is the registry with one more line, the way a new platform
// joins Parley: nothing else in cmd/parley, config or the core knows it.
func withFakechat() registry.List {
	return append(registry.All(), registry.Platform{Descriptor: fakechat.Descriptor, Demo: fakechatsim.NewDemo})
}

// TestANewPlatformJoinsByItsRegistryLine: a connector written against the
// kit, added by one registry line, is printed by config example, checked by
// config check (its own rules, with paths) and driven by the demo's whole
// script beside Telegram.
func TestANewPlatformJoinsByItsRegistryLine(t *testing.T) {
	env, out, errOut := testEnv(nil)
	env.platforms = withFakechat()
	if code := run(t.Context(), env, []string{"config", "example", "fakechat"}); code != exitOK {
		t.Fatalf("config example fakechat: exit %d: %s", code, errOut)
	}
	sample := out.String()
	if !strings.Contains(sample, "platform: fakechat") || !strings.Contains(sample, "app_secret:") {
		t.Fatalf("the example lacks the fakechat connector:\n%s", sample)
	}
	vars := map[string]string{"PARLEY_API_TOKEN": "tok"}
	for _, name := range []string{"FAKECHAT_APP_SECRET", "FAKECHAT_VERIFY_TOKEN", "FAKECHAT_TOKEN_1001", "FAKECHAT_ACCESS_TOKEN"} {
		vars[name] = "s3cret"
	}
	path := writeConfig(t, sample)
	env, out, errOut = testEnv(vars)
	env.platforms = withFakechat()
	if code := run(t.Context(), env, []string{"config", "check", "--config", path}); code != exitOK {
		t.Fatalf("the fakechat example does not pass config check (exit %d):\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out.String(), "fakechat") {
		t.Errorf("config check does not list the connector:\n%s", out)
	}

	// Its own rules, with paths, through the same check.
	bad := writeConfig(t, "connectors:\n  - id: fc\n    platform: fakechat\n    region: eu\n    fakechat: {accounts: [], extra: 1}\n")
	env, out, errOut = testEnv(nil)
	env.platforms = withFakechat()
	if code := run(t.Context(), env, []string{"config", "check", "--config", bad}); code != exitUsage {
		t.Fatalf("config check of a bad fakechat block: exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{"connectors[0] (fc): fakechat.app_secret", "connectors[0] (fc): fakechat.extra"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("config check does not report %q:\n%s", want, errOut)
		}
	}

	// The binary without the line does not know it.
	env, _, errOut = testEnv(nil)
	if code := run(t.Context(), env, []string{"config", "example", "fakechat"}); code != exitUsage || !strings.Contains(errOut.String(), "not built into this binary") {
		t.Errorf("config example fakechat without its registry line: exit %d: %s", code, errOut)
	}
}

func TestTheDemoRunsEveryRegisteredPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes a few seconds")
	}
	env, out, errOut := testEnv(nil)
	env.platforms = withFakechat()
	if code := run(t.Context(), env, []string{"demo"}); code != exitOK {
		t.Fatalf("demo with fakechat: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"Telegram (connector telegram-demo)", "Fakechat (connector fakechat-demo)", "Checked on Fakechat", "Every step held on Telegram, Fakechat."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the transcript lacks %q:\n%s", want, out)
		}
	}
}

// TestCmdNamesNoPlatform holds cmd/parley to the registry: it imports no
// connector package, so the demo and samples can only come from there.
func TestCmdNamesNoPlatform(t *testing.T) {
	b, err := exec.Command("go", "list", "-json=ImportPath,Imports", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkg struct{ Imports []string }
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		rest, ok := strings.CutPrefix(imp, "github.com/parley-gateway/parley/connectors/")
		if !ok {
			continue
		}
		switch rest {
		case "registry", "simkit":
		default:
			t.Errorf("cmd/parley imports %s: a platform must come from the registry", imp)
		}
	}
}
