package main

// CONTRACT §1, the command line: exit codes, --help, --config defaults,
// config check and example, version, demo, and the commands that need
// NATS (tail, reply, dlq, serve on SIGINT) against the shared gateway.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
)

// contractCLI runs the commands that need no running gateway, each as a
// separate process of the built binary.
func contractCLI(t *testing.T, bin string) {
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "good.yaml"), `
api:
  tokens: ["${CT_API_TOKEN}"]
connectors:
  - id: tg-ok
    platform: telegram
    region: eu
    telegram:
      token: "${CT_TG_TOKEN}"
  - id: tg-us
    platform: telegram
    region: us-east
    telegram:
      token: "2:us-secret"
  - id: tg-off
    platform: telegram
    region: latam
    enabled: false
    telegram:
      token: "3:off-secret"
`)
	env := cleanEnv("CT_API_TOKEN=api-secret-value", "CT_TG_TOKEN=1:tg-secret-value")
	par := newPar(t)
	defer par.wait()

	par.run("§1 --help exits 0 for every command", func(t *testing.T) {
		for _, args := range [][]string{
			{"--help"}, {"serve", "--help"}, {"demo", "--help"}, {"config", "--help"}, {"config", "check", "--help"},
			{"config", "example", "--help"}, {"tail", "--help"}, {"reply", "--help"}, {"dlq", "--help"},
			{"dlq", "list", "--help"}, {"dlq", "replay", "--help"}, {"dlq", "purge", "--help"}, {"healthcheck", "--help"}, {"version", "--help"},
		} {
			out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, args...)
			if code != exitOK {
				t.Errorf("§1 every subcommand has --help: `parley %s` exited %d\n%s%s", strings.Join(args, " "), code, out, errOut)
			}
			if strings.TrimSpace(out+errOut) == "" {
				t.Errorf("`parley %s` printed no help", strings.Join(args, " "))
			}
		}
	})

	par.run("§1 usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{}, {"frobnicate"}, {"serve", "--no-such-flag"}, {"config"}, {"config", "nope"}, {"dlq"},
			{"config", "example", "icq"}, {"reply", "--config", good, "--conversation", "c_x"},
			{"serve", "--config", filepath.Join(dir, "missing.yaml")},
			{"serve", "--config", writeFile(t, filepath.Join(dir, "unknown-key.yaml"), "api: {tokens: [x]}\nconnectors: []\nfrobnicate: 1\n")},
			{"config", "check", "--config", filepath.Join(dir, "unknown-key.yaml")},
		} {
			out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, args...)
			if code != exitUsage {
				t.Errorf("§1 exit 2 on a usage error: `parley %s` exited %d\n%s%s", strings.Join(args, " "), code, out, errOut)
			}
		}
	})

	par.run("§1 version prints version, commit, Go version", func(t *testing.T) {
		out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "version")
		if code != exitOK {
			t.Fatalf("version exited %d: %s", code, errOut)
		}
		for _, s := range []string{"parley ", "commit", "go1."} {
			if !strings.Contains(out, s) {
				t.Errorf("§1 `parley version` (version, commit, Go version) lacks %q:\n%s", s, out)
			}
		}
	})

	par.run("§1 config check prints per region the connectors that would run", func(t *testing.T) {
		out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "config", "check", "--config", good)
		if code != exitOK {
			t.Fatalf("config check of a valid file exited %d\n%s%s", code, out, errOut)
		}
		sections := map[string]string{}
		var cur string
		for _, line := range strings.Split(out, "\n") {
			if r, ok := strings.CutPrefix(line, "region "); ok {
				cur = strings.TrimSuffix(strings.TrimSpace(r), ":")
				continue
			}
			if strings.HasPrefix(line, "  ") && cur != "" {
				sections[cur] += line + "\n"
			} else {
				cur = ""
			}
		}
		if !strings.Contains(sections["eu"], "tg-ok") || !strings.Contains(sections["us-east"], "tg-us") {
			t.Errorf("§1 config check must print, per region, the connectors that would run; got:\n%s", out)
		}
		for r, s := range sections {
			if strings.Contains(s, "tg-off") {
				t.Errorf("§1 config check lists disabled tg-off as running in region %s:\n%s", r, out)
			}
		}
		if strings.Contains(out+errOut, "secret-value") {
			t.Errorf("§2 a secret appears in config check output:\n%s%s", out, errOut)
		}
	})

	par.run("§1 config check lists every problem with its path", func(t *testing.T) {
		bad := writeFile(t, filepath.Join(t.TempDir(), "bad.yaml"), `
api:
  tokens: ["x"]
connectors:
  - id: tg-ok
    platform: telegram
    region: eu
    telegram:
      token: "1:abc"
  - id: tg-bad
    platform: telegram
    region: eu
    telegram:
      mode: webhook
`)
		_, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "config", "check", "--config", bad)
		if code != exitUsage {
			t.Errorf("§1 an invalid config is a configuration error (exit 2); got %d", code)
		}
		lines := strings.Split(errOut, "\n")
		for _, want := range []string{"connectors[1] (tg-bad): telegram.token: required", "connectors[1] (tg-bad): telegram.webhook_secret: "} {
			found := false
			for _, l := range lines {
				if strings.HasPrefix(strings.TrimSpace(l), want) {
					found = true
				}
			}
			if !found {
				t.Errorf("§1 config check must list every problem with its path (`connectors[1] (fb-latam): messenger.app_secret: required`): no line %q in:\n%s", want, errOut)
			}
		}
	})

	par.run("§1 config check lists every problem even next to an unknown key", func(t *testing.T) {
		bad := writeFile(t, filepath.Join(t.TempDir(), "bad.yaml"), `
api:
  tokens: ["x"]
connectors:
  - id: tg-bad
    platform: telegram
    region: eu
    telegram:
      mode: webhook
      bogus: 1
`)
		_, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "config", "check", "--config", bad)
		if code != exitUsage {
			t.Errorf("exit %d, want 2", code)
		}
		for _, want := range []string{"connectors[0] (tg-bad): telegram.bogus: unknown key", "connectors[0] (tg-bad): telegram.token: required",
			"connectors[0] (tg-bad): telegram.webhook_secret: "} {
			if !strings.Contains(errOut, want) {
				t.Errorf("§1 `config check` \"lists every problem with its path\": the block has an unknown key, a missing token and a missing webhook_secret, but %q is not listed; output:\n%s", want, errOut)
			}
		}
	})

	par.run("§1 config check connects nowhere", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan string) // the remote address of each connection
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
				select {
				case accepted <- c.RemoteAddr().String():
				case <-t.Context().Done():
					return
				}
			}
		}()
		cfg := writeFile(t, filepath.Join(t.TempDir(), "p.yaml"), fmt.Sprintf(`
nats:
  url: nats://%[1]s
api:
  tokens: ["x"]
connectors:
  - id: tg-a
    platform: telegram
    region: eu
    telegram:
      token: "1:abc"
      api_url: http://%[1]s
`, ln.Addr()))
		out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "config", "check", "--config", cfg)
		if code != exitOK {
			t.Fatalf("config check exited %d\n%s%s", code, out, errOut)
		}
		// config check has exited, so any connection it opened is in the
		// listener's queue, which is first in, first out: once a probe
		// opened now is accepted, every earlier connection has been.
		probe, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer probe.Close()
		n := 0
		deadline := time.After(10 * time.Second)
	accepting:
		for {
			select {
			case addr := <-accepted:
				if addr == probe.LocalAddr().String() {
					break accepting
				}
				n++
			case <-deadline:
				t.Fatal("the probe connection was not accepted within 10s")
			}
		}
		if n > 0 {
			t.Errorf("§1 config check validates \"without connecting anywhere\", but it opened %d connection(s) to nats.url/api_url", n)
		}
	})

	par.run("§1 --config defaults to $PARLEY_CONFIG, else ./parley.yaml", func(t *testing.T) {
		// $PARLEY_CONFIG.
		out, errOut, code := runCLI(t, bin, t.TempDir(), cleanEnv("PARLEY_CONFIG="+good, "CT_API_TOKEN=a", "CT_TG_TOKEN=1:b"), 20*time.Second, "config", "check")
		if code != exitOK || !strings.Contains(out, good) {
			t.Errorf("§1 config check without --config must read $PARLEY_CONFIG (%s): exit %d\n%s%s", good, code, out, errOut)
		}
		// ./parley.yaml.
		cwd := t.TempDir()
		body, _ := os.ReadFile(good)
		writeFile(t, filepath.Join(cwd, "parley.yaml"), string(body))
		out, errOut, code = runCLI(t, bin, cwd, env, 20*time.Second, "config", "check")
		if code != exitOK || !strings.Contains(out, "parley.yaml") {
			t.Errorf("§1 config check without --config and $PARLEY_CONFIG must read ./parley.yaml: exit %d\n%s%s", code, out, errOut)
		}
		// $PARLEY_CONFIG wins over ./parley.yaml.
		other := writeFile(t, filepath.Join(t.TempDir(), "other.yaml"), "api: {tokens: [x]}\nconnectors: []\n")
		out, errOut, code = runCLI(t, bin, cwd, cleanEnv("PARLEY_CONFIG="+other), 20*time.Second, "config", "check")
		if code != exitOK || !strings.Contains(out, other) {
			t.Errorf("§1 $PARLEY_CONFIG must come before ./parley.yaml: exit %d\n%s%s", code, out, errOut)
		}
		// Every command that needs a config reads ./parley.yaml by default.
		empty := t.TempDir()
		for _, args := range [][]string{{"serve"}, {"tail"}, {"reply", "--conversation", "c_x", "--text", "t"}, {"dlq", "list"}, {"config", "check"}} {
			_, errOut, code := runCLI(t, bin, empty, env, 20*time.Second, args...)
			if code != exitUsage || !strings.Contains(errOut, "parley.yaml") {
				t.Errorf("§1 `parley %s` with no config must look for ./parley.yaml and exit 2: exit %d\n%s", strings.Join(args, " "), code, errOut)
			}
		}
	})

	par.run("§1 config example prints a commented sample that passes config check", func(t *testing.T) {
		for _, args := range [][]string{{"config", "example"}, {"config", "example", "telegram"}} {
			out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, args...)
			if code != exitOK {
				t.Fatalf("`parley %s` exited %d: %s", strings.Join(args, " "), code, errOut)
			}
			if !strings.Contains(out, "platform: telegram") || !strings.Contains(out, "#") {
				t.Errorf("§1 `parley %s` must print a commented sample config:\n%s", strings.Join(args, " "), out)
			}
			p := writeFile(t, filepath.Join(t.TempDir(), "ex.yaml"), out)
			vars := []string{"PARLEY_API_TOKEN=tok", "TELEGRAM_TOKEN=1:abc", "TELEGRAM_WEBHOOK_SECRET=s"}
			cout, cerr, code := runCLI(t, bin, dir, cleanEnv(vars...), 20*time.Second, "config", "check", "--config", p)
			if code != exitOK {
				t.Errorf("the output of `parley %s` does not pass config check (exit %d)\n%s%s", strings.Join(args, " "), code, cout, cerr)
			}
		}
	})

	par.run("§1 serve exits 1 on a runtime failure (NATS unreachable), within a bound", func(t *testing.T) {
		d := t.TempDir()
		dead := mustFreeAddr(t)
		cfg := writeFile(t, filepath.Join(d, "p.yaml"), fmt.Sprintf(`
data_dir: %q
nats: {url: "nats://%s"}
http: {listen: %q}
api: {tokens: ["x"]}
connectors:
  - id: tg-a
    platform: telegram
    region: eu
    telegram: {token: "1:abc", api_url: "http://%s"}
`, filepath.Join(d, "data"), dead, mustFreeAddr(t), dead))
		start := time.Now()
		p := startProc(t, bin, d, nil, "serve", "--config", cfg)
		code, ok := p.wait(60 * time.Second)
		if !ok {
			t.Fatalf("§1 serve against an unreachable NATS still runs after 60s (no bounded failure)\n%s", p.output())
		}
		if code != exitRuntime {
			t.Errorf("§1 exit 1 on a runtime failure: serve against an unreachable NATS exited %d after %s\n%s", code, time.Since(start).Round(time.Millisecond), p.output())
		}
		t.Logf("serve against an unreachable NATS exited %d after %s", code, time.Since(start).Round(time.Millisecond))
	})

	par.run("§1 tail, reply and dlq exit 1 when NATS is unreachable, within a bound", func(t *testing.T) {
		dead := mustFreeAddr(t)
		cfg := writeFile(t, filepath.Join(t.TempDir(), "p.yaml"), fmt.Sprintf(`
nats: {url: "nats://%s"}
api: {tokens: ["x"]}
connectors:
  - id: tg-a
    platform: telegram
    region: eu
    telegram: {token: "1:abc"}
`, dead))
		sub := newPar(t)
		for _, args := range [][]string{
			{"tail", "--config", cfg},
			{"reply", "--config", cfg, "--conversation", "c_AAAAAAAAAAAAAAAAAAAAAAAA", "--text", "hi"},
			{"dlq", "list", "--config", cfg},
		} {
			sub.run(args[0], func(t *testing.T) {
				start := time.Now()
				_, errOut, code := runCLI(t, bin, "", env, 45*time.Second, args...)
				if code != exitRuntime {
					t.Errorf("§1 exit 1 on a runtime failure: `parley %s` against an unreachable NATS exited %d after %s: %s",
						strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), errOut)
				}
			})
		}
		sub.wait()
		_, errOut, code := runCLI(t, bin, "", env, 20*time.Second, "tail", "--config", good, "--region", "mars")
		if code != exitUsage {
			t.Errorf("§1 tail --region with a region no connector names is a usage error: exit %d %s", code, errOut)
		}
	})

	par.run("§1 demo runs the whole pipeline and exits 0", func(t *testing.T) {
		out, errOut, code := runCLI(t, bin, t.TempDir(), nil, 60*time.Second, "demo")
		if code != exitOK {
			t.Fatalf("§1 `parley demo` exits 0 when every step held: exit %d\n%s%s", code, out, errOut)
		}
		for _, s := range []string{"429", "dead-letter", "photo", "location", "edit", "reaction", "button"} {
			if !strings.Contains(strings.ToLower(out), s) {
				t.Errorf("§1 the demo transcript lacks %q:\n%s", s, out)
			}
		}
	})

	par.run("§1 demo --keep leaves it running for tail and the HTTP API", func(t *testing.T) {
		p := startProc(t, bin, t.TempDir(), nil, "demo", "--keep")
		re := regexp.MustCompile(`dlq list --config (\S+)`)
		var cfgPath string
		if err := waitCond(60*time.Second, func() bool {
			m := re.FindStringSubmatch(p.stdout.String())
			if m != nil {
				cfgPath = m[1]
			}
			return cfgPath != "" || !p.running()
		}); err != nil || cfgPath == "" {
			t.Fatalf("§1 demo --keep did not print a config to use: %v\n%s", err, p.output())
		}
		pauseForNegativeCheck()
		if !p.running() {
			t.Fatalf("§1 demo --keep stopped\n%s", p.output())
		}
		out, errOut, code := runCLI(t, bin, "", nil, 30*time.Second, "dlq", "list", "--config", cfgPath)
		if code != exitOK || !strings.Contains(out, "recipient_unavailable") {
			t.Errorf("§1 `dlq list` against demo --keep: exit %d\n%s%s", code, out, errOut)
		}
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code, ok := p.wait(30 * time.Second); !ok || code != exitOK {
			t.Errorf("demo --keep on SIGINT: exited=%v code %d\n%s", ok, code, p.output())
		}
	})
}

// gwReplyCLI runs `parley reply` against the shared gateway (§1).
func gwReplyCLI(t *testing.T, g *gateway) {
	env := gwEnv(g.cfgPath)
	const chat = 2005
	conv := g.inbound(t, chat, "cli please").E.Subject
	out, errOut, code := runCLI(t, g.bin, g.dir, env, 60*time.Second, "reply", "--conversation", conv, "--text", "hello from the cli", "--id", "cli-ok-1")
	g.submitted("cli-ok-1", false)
	if code != exitOK || !strings.Contains(out, "reply.sent") {
		t.Errorf("§1 `parley reply --conversation C --text T` publishes, waits and prints reply.sent (exit 0): exit %d\n%s%s", code, out, errOut)
	}
	if sent := g.sim.SentTo(chat); len(sent) != 1 || sent[0].Text != "hello from the cli" {
		t.Errorf("the simulator got %+v", sent)
	}
}

// gwTail runs `parley tail --json --conversation C` and `parley tail --type T` (§1).
func gwTail(t *testing.T, g *gateway) {
	env := gwEnv(g.cfgPath)
	const chat, other = 2011, 2013
	conv := g.inbound(t, chat, "tail warm-up").E.Subject
	otherConv := g.inbound(t, other, "tail other warm-up").E.Subject
	tj := startProc(t, g.bin, g.dir, env, "tail", "--json", "--conversation", conv)
	tr := startProc(t, g.bin, g.dir, env, "tail", "--type", "message.received")
	var jsonLine string
	readable := func() bool { return strings.Contains(tr.stdout.String(), "message.received") }
	for i := 0; (jsonLine == "" || !readable()) && i < 30; i++ {
		g.sim.Enqueue(g.sim.UserText(other, user(other), fmt.Sprintf("not for tail %d", i)))
		g.sim.Enqueue(g.sim.UserText(chat, user(chat), fmt.Sprintf("tail me %d", i)))
		_ = waitCond(500*time.Millisecond, func() bool {
			for _, l := range strings.Split(tj.stdout.String(), "\n") {
				if strings.Contains(l, "tail me") {
					jsonLine = l
					return true
				}
			}
			return false
		})
		if !tj.running() || !tr.running() {
			t.Fatalf("tail exited\n%s\n%s", tj.output(), tr.output())
		}
	}
	if jsonLine == "" {
		t.Fatalf("§1 `parley tail --json` printed no line for new events within 15s\n%s", tj.output())
	}
	e := newEvMsg(0, "", nil, []byte(jsonLine))
	if e.Err != nil || e.E.SpecVersion != "1.0" || e.E.Type != "parley.message.received" || e.E.Subject != conv {
		t.Errorf("§1 tail --json prints the raw event: %q", jsonLine)
	}
	if strings.Contains(tj.stdout.String(), otherConv) || strings.Contains(tj.stdout.String(), "not for tail") {
		t.Errorf("§1 tail --conversation %s printed another conversation's events:\n%s", conv, tj.stdout.String())
	}
	if !readable() {
		t.Errorf("§1 `parley tail --type message.received` printed no readable line:\n%s", tr.output())
	}
	for _, p := range []*proc{tj, tr} {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		if code, ok := p.wait(10 * time.Second); !ok || code != exitOK {
			t.Errorf("tail on SIGINT: stopped=%v exit %d\n%s", ok, code, p.output())
		}
	}
}

// gwDLQ dead-letters two replies to a blocked chat, purges one and replays the other (§1, §4).
func gwDLQ(t *testing.T, g *gateway) {
	env := gwEnv(g.cfgPath)
	const chat = 2004
	conv := g.inbound(t, chat, "I will block you").E.Subject
	g.sim.Block(chat)
	out, errOut, code := runCLI(t, g.bin, g.dir, env, 60*time.Second, "reply", "--conversation", conv, "--text", "blocked one", "--id", "dlq-cli-1")
	g.submitted("dlq-cli-1", true)
	if code == exitOK || !strings.Contains(out, "reply.failed") {
		t.Errorf("§1 `parley reply` must print reply.failed and exit non-zero on a failure: exit %d\n%s%s", code, out, errOut)
	}
	st := g.status(t, "dlq-cli-1", 20*time.Second)
	if st.E.Type != "parley.reply.failed" || st.E.Data.Reply.Error == nil || st.E.Data.Reply.Error.Code != "recipient_unavailable" {
		t.Errorf("§5 a reply to a user who blocked the bot: %s, want reply.failed recipient_unavailable", st)
	}
	g.reply(t, map[string]any{"id": "dlq-purge-1", "conversation_id": conv, "text": "blocked two"})
	if st := g.status(t, "dlq-purge-1", 20*time.Second); st.E.Type != "parley.reply.failed" {
		t.Fatalf("dlq-purge-1: %s", st)
	}

	// dlq list reads ./parley.yaml by default (cwd = the gateway's dir, no $PARLEY_CONFIG).
	noEnvCfg := cleanEnv("CT_API_TOKEN="+gwAPIToken, "CT_TG_TOKEN="+gwToken, "CT_TG_SECRET="+gwSecret)
	out, errOut, code = runCLI(t, g.bin, g.dir, noEnvCfg, 30*time.Second, "dlq", "list")
	if code != exitOK || !strings.Contains(out, "dlq-cli-1") || !strings.Contains(out, "dlq-purge-1") {
		t.Fatalf("§1 `parley dlq list` after permanent failures: exit %d\n%s%s", code, out, errOut)
	}
	// DLQ subject and failure headers.
	dl := scanStream(t, g.js, "PARLEY_DLQ_US_EAST", func(m *evMsg) bool { return true })
	wantSubj := fmt.Sprintf("parley.dlq.%s.telegram.%s.%s", gwRegion, gwConnector, conv)
	ours := 0
	for _, m := range dl {
		var body struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(m.Raw, &body)
		if body.ID != "dlq-cli-1" && body.ID != "dlq-purge-1" {
			continue
		}
		ours++
		if m.Subject != wantSubj {
			t.Errorf("§4 dead letter subject %q, want parley.dlq.<region>.<platform>.<connector>.<conv> = %q", m.Subject, wantSubj)
		}
		if len(m.Header) == 0 {
			t.Errorf("§4 dead-lettered reply commands carry failure headers: none on %s", m.Subject)
		}
	}
	if ours != 2 {
		t.Errorf("the DLQ holds %d of the 2 dead-lettered replies", ours)
	}

	out, errOut, code = runCLI(t, g.bin, g.dir, env, 30*time.Second, "dlq", "purge", "dlq-purge-1")
	if code != exitOK {
		t.Errorf("§1 `parley dlq purge ID`: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLI(t, g.bin, g.dir, env, 30*time.Second, "dlq", "list")
	if strings.Contains(out, "dlq-purge-1") || !strings.Contains(out, "dlq-cli-1") {
		t.Errorf("§1 after `dlq purge dlq-purge-1`, dlq list shows:\n%s", out)
	}

	// The user unblocks the bot: Telegram sends my_chat_member
	// (kicked → member), which the simulator's Unblock does not.
	g.sim.Unblock(chat)
	bot := map[string]any{"id": 5151, "is_bot": true, "first_name": "Parley Sim", "username": "parley_sim_bot"}
	from := map[string]any{"id": chat, "is_bot": false, "first_name": "Ana"}
	mcm, _ := json.Marshal(map[string]any{"my_chat_member": map[string]any{
		"chat": map[string]any{"id": chat, "type": "private", "first_name": "Ana"}, "from": from, "date": time.Now().Unix(),
		"old_chat_member": map[string]any{"status": "kicked", "user": bot, "until_date": 0},
		"new_chat_member": map[string]any{"status": "member", "user": bot},
	}})
	if _, err := g.sim.EnqueueJSON(mcm); err != nil {
		t.Fatal(err)
	}
	if err := waitCond(15*time.Second, func() bool {
		r := g.api(t, http.MethodGet, "/v1/conversations/"+conv, gwAPIToken, nil)
		var e map[string]any
		_ = json.Unmarshal(r.body, &e)
		return e["reachable"] == true
	}); err != nil {
		t.Fatalf("the conversation is not reachable again after my_chat_member (member): %v", err)
	}
	out, errOut, code = runCLI(t, g.bin, g.dir, env, 30*time.Second, "dlq", "replay", "dlq-cli-1")
	if code != exitOK {
		t.Fatalf("§1 `parley dlq replay ID`: exit %d\n%s%s", code, out, errOut)
	}
	re := g.events.waitFor(t, 30*time.Second, "a second status of the replayed dlq-cli-1", func(m *evMsg) bool {
		return strings.HasPrefix(m.E.Type, "parley.reply.") && m.replyID() == "dlq-cli-1" && m.Seq > st.Seq
	})
	if re.E.Type != "parley.reply.sent" {
		t.Errorf("§1 \"dlq replay\" re-queues a dead-lettered reply: after unblocking the chat and `parley dlq replay dlq-cli-1` (exit 0: %q), the replayed reply ends in %s: %s",
			strings.TrimSpace(out), re.E.Type, re.Raw)
	}
	g.settled(t, conv)
	var texts []string
	for _, s := range g.sim.SentTo(chat) {
		texts = append(texts, s.Text)
	}
	if !slices.Equal(texts, []string{"blocked one"}) {
		t.Errorf("§1 dlq replay re-queues: after the replay the chat got %q, want [\"blocked one\"]", texts)
	}
	out, _, _ = runCLI(t, g.bin, g.dir, env, 30*time.Second, "dlq", "list")
	if strings.Contains(out, "dlq-cli-1") {
		t.Logf("dlq list still shows the replayed reply:\n%s", out)
	}
}

// gwSIGINT stops the shared gateway with a send in flight (§1).
func gwSIGINT(t *testing.T, g *gateway) {
	const chat = 2014
	conv := g.inbound(t, chat, "slow one").E.Subject
	before := g.sim.Requests("sendMessage")
	g.sim.FailChat(chat, telegramsim.Delay(3*time.Second), 1)
	g.reply(t, map[string]any{"id": "inflight-1", "conversation_id": conv, "text": "in flight at shutdown"})
	if err := waitCond(10*time.Second, func() bool { return g.sim.Requests("sendMessage") > before }); err != nil {
		t.Fatalf("the slow send did not start: %v", err)
	}
	if err := g.proc.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// Draining is the first step of the shutdown; the slow send keeps the
	// server up while it lasts.
	if err := waitCond(10*time.Second, func() bool { return readyzDraining(g.base) }); err != nil {
		t.Fatalf("/readyz does not say \"draining\": true after SIGINT: %v\n%s", err, g.proc.stderr.String())
	}
	r := g.webhook(t, gwSecret, updateJSON(g.updateID.Add(1), 7010, 1, time.Now().Unix(), "while stopping"))
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("§1 serve \"stops cleanly on SIGINT/SIGTERM: stops taking webhooks (503)\": a webhook during shutdown answered %s", r)
	}
	code, ok := g.proc.wait(30 * time.Second)
	if !ok {
		t.Fatalf("§1 serve still runs 30s after SIGINT\n%s", g.proc.stderr.String())
	}
	if code != exitOK {
		t.Errorf("§1 serve exited %d after SIGINT, want 0\n%s", code, g.proc.stderr.String())
	}
	if sent := g.sim.SentTo(chat); len(sent) != 1 || sent[0].Text != "in flight at shutdown" {
		t.Errorf("§1 serve on SIGINT \"finishes in-flight work\": the simulator got %d messages", len(sent))
	}
	if st := g.events.filter(func(m *evMsg) bool { return m.replyID() == "inflight-1" }); len(st) != 1 || st[0].E.Type != "parley.reply.sent" {
		t.Errorf("§1/§6 the reply sent during shutdown must have its reply.sent stored before exit; statuses: %d", len(st))
	}
}

// readyzDraining reports whether base/readyz answers with "draining": true.
func readyzDraining(base string) bool {
	resp, err := httpc.Get(base + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body struct {
		Draining bool `json:"draining"`
	}
	return json.NewDecoder(resp.Body).Decode(&body) == nil && body.Draining
}
