package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// aliasBomb returns a configuration whose first connector anchors a list of
// items entries and whose other connectors, connectors-1 of them, refer to
// it: the shape of the files that ran `parley config check` for minutes.
func aliasBomb(items, connectors int) []byte {
	var b strings.Builder
	b.WriteString("connectors:\n")
	for i := range connectors {
		fmt.Fprintf(&b, "  - id: c%d\n    platform: telegram\n    region: eu\n    telegram:\n      token: \"1:x\"\n      allowed_updates: ", i)
		if i > 0 {
			b.WriteString("*updates\n")
			continue
		}
		b.WriteString("&updates [")
		for j := range items {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "u%d", j)
		}
		b.WriteString("]\n")
	}
	return []byte(b.String())
}

// checkEveryItem is a SettingsCheck with one problem per item of
// allowed_updates ("u0" is not an integer), as a connector has one per
// unknown update type: every node an alias adds costs a problem.
func checkEveryItem(c Connector) []Problem {
	var s struct {
		Token   string `yaml:"token"`
		Updates []int  `yaml:"allowed_updates"`
	}
	return ProblemsOf(c.DecodeSettings(&s))
}

// parseMeasured parses data as `parley config check` would and returns the
// error, how long it took and the bytes it allocated. It gives up after a
// minute, so that a regression fails instead of hanging the run.
func parseMeasured(t *testing.T, data []byte) (error, time.Duration, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := Parse(data, noEnv, WithPlatforms([]string{"telegram"}), WithSettingsCheck(checkEveryItem))
		done <- err
	}()
	select {
	case err := <-done:
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		return err, took, after.TotalAlloc - before.TotalAlloc
	case <-time.After(time.Minute):
		t.Fatalf("Parse still running after a minute")
		return nil, 0, 0
	}
}

func TestParseRefusesAConfigThatAliasesExpandPastTheBound(t *testing.T) {
	const (
		// Generous for a loaded CI machine and the race detector; the
		// refusal takes milliseconds.
		maxTime  = 5 * time.Second
		maxAlloc = 100 << 20
	)
	for _, tc := range []struct {
		name string
		data []byte
		want string // its line is that of the reference that crosses the bound
	}{
		{
			// The 50th reference brings 50 × 2,001 nodes.
			name: "a 2,000-item list referenced by 200 connectors",
			data: aliasBomb(2000, 200),
			want: "the configuration expands to more than 100000 nodes through YAML aliases; refusing it (line 307)",
		},
		{
			name: "a 20,000-item list referenced by 2,000 connectors",
			data: aliasBomb(20000, 2000),
			want: "the configuration expands to more than 100000 nodes through YAML aliases; refusing it (line 37)",
		},
		{
			name: "ten levels of ten references",
			data: []byte(laughs(10, 10)),
			// Line 5's references are to lists of 11,111 nodes.
			want: "the configuration expands to more than 100000 nodes through YAML aliases; refusing it (line 5)",
		},
		{
			name: "a long value referenced often",
			data: []byte("x: &long " + strings.Repeat("a", 1<<20) + "\ny: [*long, *long, *long, *long, *long]\n"),
			want: "the configuration expands to more than 4 MiB through YAML aliases; refusing it (line 2)",
		},
		{
			name: "an anchor that contains itself",
			data: []byte("connectors:\n  - &self {id: a, platform: telegram, region: eu, telegram: {token: t, loop: [*self]}}\n"),
			want: `anchor "self" contains a reference to itself, so it expands without end; refusing the configuration (line 2)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err, took, alloc := parseMeasured(t, tc.data)
			t.Logf("%d KB refused in %s with %d KB allocated", len(tc.data)>>10, took.Round(time.Millisecond), alloc>>10)
			if got := problemStrings(t, err); len(got) != 1 || got[0] != tc.want {
				t.Errorf("problems: %.500q\nwant one: %q", got, tc.want)
			}
			if took > maxTime {
				t.Errorf("refused after %s, want within %s", took, maxTime)
			}
			if alloc > maxAlloc {
				t.Errorf("allocated %d MB, want under %d MB", alloc>>20, maxAlloc>>20)
			}
		})
	}
}

// laughs returns a document in which each of levels lists refers width
// times to the one before: width^levels nodes from a few hundred bytes.
func laughs(levels, width int) string {
	var b strings.Builder
	b.WriteString("x0: &l0 [" + strings.Repeat("a, ", width-1) + "a]\n")
	for i := 1; i < levels; i++ {
		refs := strings.Repeat(fmt.Sprintf("*l%d, ", i-1), width)
		fmt.Fprintf(&b, "x%d: &l%d [%s]\n", i, i, strings.TrimSuffix(refs, ", "))
	}
	return b.String()
}

func TestParseAcceptsAliasesUpToTheBound(t *testing.T) {
	t.Run("a block shared by connectors, and merged into one", func(t *testing.T) {
		cfg := mustParse(t, `
api:
  tokens: &tokens [a, b]
connectors:
  - id: tg-eu
    platform: telegram
    region: eu
    telegram: &tg {token: "1:x", mode: polling}
  - id: tg-us
    platform: telegram
    region: us
    telegram: *tg
  - id: tg-latam
    platform: telegram
    region: latam
    telegram:
      <<: *tg
      mode: webhook
`, WithPlatforms([]string{"telegram"}), WithSettingsCheck(checkTelegramMode))
		if len(cfg.Connectors) != 3 || len(cfg.API.Tokens) != 2 {
			t.Fatalf("got %d connectors and %d tokens, want 3 and 2", len(cfg.Connectors), len(cfg.API.Tokens))
		}
		for i, want := range []string{"polling", "polling", "webhook"} {
			var s struct {
				Token string `yaml:"token"`
				Mode  string `yaml:"mode"`
			}
			if err := cfg.Connectors[i].DecodeSettings(&s); err != nil || s.Mode != want || s.Token != "1:x" {
				t.Errorf("connectors[%d]: settings %+v, %v; want token 1:x and mode %s", i, s, err, want)
			}
		}
	})

	// 1,000 nodes (a list and its 999 items) referenced 100 times add
	// exactly maxAliasNodes; once more is past the bound.
	doc := func(refs int) []byte {
		return []byte(fmt.Sprintf("connectors:\n  - id: a\n    platform: telegram\n    region: eu\n    telegram:\n      x: &l [%s]\n      y: [%s]\n",
			strings.TrimSuffix(strings.Repeat("1, ", 999), ", "), strings.TrimSuffix(strings.Repeat("*l, ", refs), ", ")))
	}
	t.Run("exactly the bound", func(t *testing.T) {
		if _, err := Parse(doc(100), noEnv, WithPlatforms([]string{"telegram"})); err != nil {
			t.Errorf("refused at the bound: %v", err)
		}
	})
	t.Run("one reference past the bound", func(t *testing.T) {
		_, err := Parse(doc(101), noEnv, WithPlatforms([]string{"telegram"}))
		want := "the configuration expands to more than 100000 nodes through YAML aliases; refusing it (line 7)"
		if got := problemStrings(t, err); len(got) != 1 || got[0] != want {
			t.Errorf("problems: %q, want only %q", got, want)
		}
	})
}

// checkTelegramMode decodes a block with a token and a mode strictly.
func checkTelegramMode(c Connector) []Problem {
	var s struct {
		Token string `yaml:"token"`
		Mode  string `yaml:"mode"`
	}
	return ProblemsOf(c.DecodeSettings(&s))
}

func TestValidationErrorPrintsTheFirstHundredProblems(t *testing.T) {
	problems := func(n int) *ValidationError {
		e := &ValidationError{}
		for i := range n {
			e.Problems = append(e.Problems, Problem{Path: fmt.Sprintf("api.tokens[%d]", i), Message: "must not be empty"})
		}
		return e
	}
	for _, tc := range []struct {
		n        int
		lines    int
		lastLine string
	}{
		{n: 1, lines: 1, lastLine: "api.tokens[0]: must not be empty"},
		{n: 100, lines: 100, lastLine: "api.tokens[99]: must not be empty"},
		{n: 101, lines: 101, lastLine: "… and 1 more problem"},
		{n: 10_000, lines: 101, lastLine: "… and 9900 more problems"},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			e := problems(tc.n)
			lines := strings.Split(e.Error(), "\n")
			if len(lines) != tc.lines || lines[len(lines)-1] != tc.lastLine {
				t.Errorf("%d lines ending %q, want %d ending %q", len(lines), lines[len(lines)-1], tc.lines, tc.lastLine)
			}
			if lines[0] != "api.tokens[0]: must not be empty" {
				t.Errorf("first line %q", lines[0])
			}
			var ve *ValidationError
			if !errors.As(error(e), &ve) || len(ve.Problems) != tc.n {
				t.Errorf("the error keeps %d problems, want all %d", len(ve.Problems), tc.n)
			}
		})
	}
}

func TestParseReportsManyProblemsOfEveryKindInBoundedTime(t *testing.T) {
	// 50,000 problems found while decoding (each token a list) and 52,000
	// found by the settings check, well inside the alias bound: telling
	// which of the second kind the first already covers once took minutes.
	data := "api:\n  tokens: [" + strings.TrimSuffix(strings.Repeat("[], ", 50_000), ", ") + "]\n" + string(aliasBomb(2000, 26))
	err, took, _ := parseMeasured(t, []byte(data))
	if n := len(problemStrings(t, err)); n != 102_000 {
		t.Errorf("%d problems, want 102000", n)
	}
	if took > 10*time.Second {
		t.Errorf("took %s, want well within 10s", took)
	}
}

func TestFilesAreReadWithinABound(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), MaxSecretFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "parley.yaml")
	body := "api:\n  tokens_file: " + big + "\n"
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(cfgPath)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load with a secret file over the bound = %v, want it refused", err)
	}
	// /dev/zero never ends: it must be refused, not read for ever.
	if err := os.WriteFile(cfgPath, []byte("api:\n  tokens: [x]\nnats:\n  token_file: /dev/zero\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(cfgPath); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load with token_file: /dev/zero = %v, want it refused", err)
	}
}
