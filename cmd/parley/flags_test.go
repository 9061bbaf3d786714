package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// parsedFlags is what TestParseFlags… reads back from its flag set.
type parsedFlags struct {
	region, text string
	json         bool
	wait         time.Duration
	args         []string
}

func wantParsed(want parsedFlags) func(*testing.T, parsedFlags, error) {
	return func(t *testing.T, got parsedFlags, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("err = %v, want none", err)
		}
		if got.region != want.region || got.text != want.text || got.json != want.json || got.wait != want.wait ||
			!slices.Equal(got.args, want.args) {
			t.Errorf("parsed %+v, want %+v", got, want)
		}
	}
}

func wantUsageError(msg string) func(*testing.T, parsedFlags, error) {
	return func(t *testing.T, _ parsedFlags, err error) {
		t.Helper()
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), msg) {
			t.Errorf("err = %v, want a usage error saying %q", err, msg)
		}
	}
}

func TestParseFlagsTakesFlagsAnywhereAmongArguments(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, p parsedFlags, err error)
	}{
		{"flags before arguments", []string{"--region", "eu", "12", "13"}, wantParsed(parsedFlags{region: "eu", args: []string{"12", "13"}})},
		{"a flag and its value after an argument (dlq replay 12 --region eu)", []string{"12", "--region", "eu"},
			wantParsed(parsedFlags{region: "eu", args: []string{"12"}})},
		{"--name=value between arguments", []string{"12", "--region=eu", "13"}, wantParsed(parsedFlags{region: "eu", args: []string{"12", "13"}})},
		{"one dash works as two", []string{"12", "-region", "eu"}, wantParsed(parsedFlags{region: "eu", args: []string{"12"}})},
		{"a bool flag between arguments takes no value", []string{"12", "--json", "13"}, wantParsed(parsedFlags{json: true, args: []string{"12", "13"}})},
		{"a bool flag takes =false, never a separate value", []string{"12", "--json=false", "false"}, wantParsed(parsedFlags{args: []string{"12", "false"}})},
		{"several flags between arguments, the last of a repeated one wins", []string{"a", "--wait", "5s", "b", "--region", "eu", "--json", "c", "--region", "us"},
			wantParsed(parsedFlags{region: "us", json: true, wait: 5 * time.Second, args: []string{"a", "b", "c"}})},
		{"-- ends flags, so a value that starts with - is an argument", []string{"--region", "eu", "--", "-12", "--json"},
			wantParsed(parsedFlags{region: "eu", args: []string{"-12", "--json"}})},
		{"-- after an argument", []string{"12", "--", "--region", "eu"}, wantParsed(parsedFlags{args: []string{"12", "--region", "eu"}})},
		{"a non-bool flag takes the next argument even when it starts with -", []string{"12", "--text", "-x", "13"},
			wantParsed(parsedFlags{text: "-x", args: []string{"12", "13"}})},
		{"a non-bool flag takes -- as its value", []string{"12", "--text", "--", "--json"}, wantParsed(parsedFlags{text: "--", json: true, args: []string{"12"}})},
		{"a lone - is an argument", []string{"-", "--json"}, wantParsed(parsedFlags{json: true, args: []string{"-"}})},
		{"no arguments at all", nil, wantParsed(parsedFlags{})},
		{"an unknown flag after an argument is a usage error", []string{"12", "--bogus", "eu"}, wantUsageError("flag provided but not defined: -bogus")},
		{"a flag without its value at the end is a usage error", []string{"12", "--region"}, wantUsageError("flag needs an argument: -region")},
		{"a bad value after an argument is a usage error", []string{"12", "--wait", "soon"}, wantUsageError(`invalid value "soon" for flag -wait`)},
		{"--help after an argument asks for help", []string{"12", "--help"}, func(t *testing.T, _ parsedFlags, err error) {
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("err = %v, want flag.ErrHelp", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var p parsedFlags
			fs.StringVar(&p.region, "region", "", "")
			fs.StringVar(&p.text, "text", "", "")
			fs.BoolVar(&p.json, "json", false, "")
			fs.DurationVar(&p.wait, "wait", 0, "")
			err := parseFlags(fs, tt.args)
			p.args = fs.Args()
			tt.check(t, p, err)
		})
	}
}

// TestSubcommandsTakeFlagsAfterArguments runs real subcommands: the shared
// parsing serves every one of them.
func TestSubcommandsTakeFlagsAfterArguments(t *testing.T) {
	twoRegions := writeConfig(t, `
api: {tokens: [x]}
connectors:
  - {id: tg-eu, platform: telegram, region: eu, telegram: {token: "1:a"}}
  - {id: tg-us, platform: telegram, region: us, telegram: {token: "2:b"}}
`)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string // substring of stderr
	}{
		// With the region taken, replay goes on to connect, and says the
		// embedded server has no listener; as ids, "--region eu" would
		// have left it asking for --region.
		{"dlq replay 12 --region eu reads the region", []string{"dlq", "replay", "12", "--config", twoRegions, "--region", "eu"}, exitUsage, "nats.embedded.listen"},
		{"an unknown flag after an id is a usage error", []string{"dlq", "replay", "12", "--config", twoRegions, "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{"config check takes --config after an argument, and rejects the argument", []string{"config", "check", "extra", "--config", twoRegions}, exitUsage, "unexpected arguments: extra\n"},
		{"config example takes a flag after the platform", []string{"config", "example", "telegram", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{"--help after an argument succeeds", []string{"config", "example", "telegram", "--help"}, exitOK, "Usage: parley config example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, out, errOut := testEnv(nil)
			if code := run(t.Context(), env, tt.args); code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, errOut)
			}
		})
	}
}
