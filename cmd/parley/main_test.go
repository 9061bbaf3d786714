package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testEnv(vars map[string]string) (*cliEnv, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	return &cliEnv{
		stdout: &out, stderr: &errOut, lookupEnv: lookup,
		getenv: func(k string) string { v, _ := lookup(k); return v },
	}, &out, &errOut
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "parley.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConfig = `
api:
  tokens: ["${PARLEY_API_TOKEN}"]
connectors:
  - id: tg-eu
    platform: telegram
    region: eu
    telegram:
      token: ${TELEGRAM_TOKEN}
  - id: tg-latam
    platform: telegram
    region: latam
    enabled: false
    telegram:
      token: "99:abc"
`

func TestCommandsExitWithTheContractsCodes(t *testing.T) {
	vars := map[string]string{"PARLEY_API_TOKEN": "tok", "TELEGRAM_TOKEN": "123:secret"}
	good := writeConfig(t, goodConfig)
	bad := writeConfig(t, `
http: {listen: "nowhere"}
nats: {replicas: 9}
connectors:
  - id: Bad_ID
    platform: telegram
    region: eu
    telegram: {mode: webhook}
`)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout
		wantErr  []string // substrings of stderr
	}{
		{"no arguments print usage and are a usage error", nil, exitUsage, []string{"Usage: parley"}, nil},
		{"help succeeds", []string{"--help"}, exitOK, []string{"Commands:"}, nil},
		{"an unknown command is a usage error", []string{"frobnicate"}, exitUsage, nil, []string{`unknown command "frobnicate"`}},
		{"version prints the Go version", []string{"version"}, exitOK, []string{"parley ", "go1."}, nil},
		{"config check accepts a valid file and lists regions", []string{"config", "check", "--config", good}, exitOK,
			[]string{"is valid", "region eu:", "tg-eu", "disabled: tg-latam"}, nil},
		{"config check lists every problem with its path", []string{"config", "check", "--config", bad}, exitUsage, nil,
			[]string{"http.listen", "nats.replicas", "connectors[0]: id", "telegram.token: required", "telegram.webhook_secret"}},
		{"config check of a missing file is a usage error", []string{"config", "check", "--config", filepath.Join(t.TempDir(), "none.yaml")}, exitUsage, nil,
			[]string{"no configuration at"}},
		{"config example prints a telegram sample", []string{"config", "example", "telegram"}, exitOK, []string{"platform: telegram", "token:"}, nil},
		{"config example of an unknown platform is a usage error", []string{"config", "example", "icq"}, exitUsage, nil, nil},
		{"serve with a bad flag is a usage error", []string{"serve", "--no-such-flag"}, exitUsage, nil, nil},
		{"reply without text is a usage error", []string{"reply", "--config", good, "--conversation", "c_x"}, exitUsage, nil, []string{"--text"}},
		{"tail without a NATS listener explains what to set", []string{"tail", "--config", good}, exitUsage, nil, []string{"nats.embedded.listen"}},
		{"dlq replay needs sequence numbers", []string{"dlq", "replay", "--config", good}, exitUsage, nil, []string{"reply id or sequence number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, out, errOut := testEnv(vars)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if code := run(ctx, env, tt.args); code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errOut)
			}
			for _, s := range tt.wantOut {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			if strings.Contains(out.String()+errOut.String(), "123:secret") {
				t.Error("a secret was printed")
			}
		})
	}
}

func TestEveryExampleConfigPassesConfigCheck(t *testing.T) {
	env, out, _ := testEnv(nil)
	if code := run(t.Context(), env, []string{"config", "example", "telegram"}); code != exitOK {
		t.Fatalf("config example exit %d", code)
	}
	path := writeConfig(t, out.String())
	vars := map[string]string{}
	for _, name := range []string{"PARLEY_API_TOKEN", "TELEGRAM_TOKEN", "TELEGRAM_WEBHOOK_SECRET"} {
		vars[name] = "123:secret"
	}
	env, out, errOut := testEnv(vars)
	if code := run(t.Context(), env, []string{"config", "check", "--config", path}); code != exitOK {
		t.Fatalf("the printed example does not pass config check (exit %d):\n%s%s", code, out, errOut)
	}
}

// TestDeployConfigPassesConfigCheck holds deploy/parley.eu.yaml to the
// variable names every sample uses.
func TestDeployConfigPassesConfigCheck(t *testing.T) {
	env, out, errOut := testEnv(map[string]string{
		"PARLEY_PUBLIC_URL": "https://parley.example.com", "PARLEY_API_TOKEN": "tok",
		"TELEGRAM_TOKEN": "123:secret", "TELEGRAM_WEBHOOK_SECRET": "s3cret",
	})
	if code := run(t.Context(), env, []string{"config", "check", "--config", filepath.Join("..", "..", "deploy", "parley.eu.yaml")}); code != exitOK {
		t.Fatalf("deploy/parley.eu.yaml does not pass config check (exit %d):\n%s%s", code, out, errOut)
	}
}

// TestDemoRunsTheWholePipeline runs `parley demo` in-process: it exits 0
// only when every scripted step held.
func TestDemoRunsTheWholePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	env, out, errOut := testEnv(nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if code := run(ctx, env, []string{"demo"}); code != exitOK {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, errOut)
	}
	for _, s := range []string{"Every step held", "dead-letter queue", "media job"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("transcript lacks %q:\n%s", s, out)
		}
	}
}
