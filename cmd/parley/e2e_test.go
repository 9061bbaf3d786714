package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

// buildParley builds the real binary once per test run.
func buildParley(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "parley")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("building parley: %v\n%s", err, out)
	}
	return bin
}

type child struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func startServe(t *testing.T, bin, cfgPath string) *child {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.Env = append(os.Environ(), "PARLEY_CONFIG=")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting parley serve: %v", err)
	}
	c := &child{cmd: cmd, stderr: &stderr}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return c
}

func waitReady(t *testing.T, base string, c *child) {
	t.Helper()
	if err := waitCond(30*time.Second, func() bool { return readyzStatus(base) == http.StatusOK }); err != nil {
		t.Fatalf("parley serve not ready within 30s; its output:\n%s", c.stderr.String())
	}
}

// TestServeSurvivesSIGKILLWithoutLosingOrDuplicatingEvents runs the real
// binary behind the Telegram simulator in webhook mode, kills it with
// SIGKILL while updates stream in, restarts it on the same data directory,
// and checks that every update Telegram saw acknowledged — which, after the
// restart, is every update — is stored exactly once.
func TestServeSurvivesSIGKILLWithoutLosingOrDuplicatingEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildParley(t)
	httpAddr := mustFreeAddr(t)
	natsAddr := mustFreeAddr(t)
	sim, err := telegramsim.NewServer(telegramsim.Options{
		Token: "4242:E2E-TOKEN", PerChatInterval: telegramsim.Disabled, GlobalPerSecond: telegramsim.Disabled,
		WebhookRetryMin: 20 * time.Millisecond, WebhookRetryMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "parley.yaml")
	cfg := fmt.Sprintf(`data_dir: %q
nats:
  embedded: {listen: %q, sync: always}
http:
  listen: %q
  public_url: "http://%s"
api:
  tokens: ["e2e-token"]
connectors:
  - id: tg-e2e
    platform: telegram
    region: eu
    telegram:
      token: "4242:E2E-TOKEN"
      mode: webhook
      webhook_secret: e2e-secret
      api_url: %q
`, filepath.Join(dir, "data"), natsAddr, httpAddr, httpAddr, sim.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "http://" + httpAddr

	first := startServe(t, bin, cfgPath)
	waitReady(t, base, first)
	if err := waitCond(10*time.Second, func() bool { return sim.WebhookInfo().URL != "" }); err != nil {
		t.Fatalf("parley did not register its webhook: %v\n%s", err, first.stderr.String())
	}

	const total = 300
	from := models.User{ID: 1, FirstName: "E2E"}
	for i := range total {
		chat := int64(1000 + i%10)
		from.ID = chat
		sim.Enqueue(sim.UserText(chat, from, "message "+strconv.Itoa(i)))
		if i == total/3 {
			// Kill mid-stream: some updates are stored and acknowledged,
			// one may be in flight, the rest wait at "Telegram".
			if err := waitCond(10*time.Second, func() bool { return sim.PendingUpdates() < total/3 }); err != nil {
				t.Fatalf("no progress before the kill: %v", err)
			}
			if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = first.cmd.Wait()
		}
	}
	pendingAfterKill := sim.PendingUpdates()
	if pendingAfterKill == 0 {
		t.Fatal("every update was delivered although the gateway was dead")
	}

	second := startServe(t, bin, cfgPath)
	waitReady(t, base, second)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := sim.WaitDrained(ctx); err != nil {
		t.Fatalf("updates still pending after the restart (%d): %v\n%s", sim.PendingUpdates(), err, second.stderr.String())
	}

	// Read every stored event through the gateway's NATS listener.
	b, err := bus.Open(ctx, bus.Options{URL: "nats://" + natsAddr, Name: "e2e-check"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	stream, err := b.JS().Stream(ctx, bus.StreamName("EVT", "eu"))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.Subjects().Events("eu")},
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for len(seen) < total {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := normalize.Decode(m.Data())
			if err != nil {
				t.Fatalf("stored event does not decode: %v", err)
			}
			if ev.Type == normalize.TypeMessageReceived {
				seen[ev.Data.Message.Text]++
			}
		}
		if n == 0 {
			break
		}
	}
	for i := range total {
		text := "message " + strconv.Itoa(i)
		if seen[text] != 1 {
			t.Errorf("%q stored %d times, want exactly once", text, seen[text])
		}
	}
	t.Logf("%d updates, %d pending at the kill, all stored once after the restart", total, pendingAfterKill)

	// A clean stop answers SIGTERM with exit 0.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("parley serve exited with %v after SIGTERM\n%s", err, second.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Error("parley serve did not stop within 30s of SIGTERM")
	}
}

func mustFreeAddr(t testing.TB) string {
	t.Helper()
	a, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitCond polls cond for up to d and returns an error when it never held:
// the callers fail in their own words, with the child process's output.
func waitCond(d time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if !wait.Poll(ctx, cond) {
		return fmt.Errorf("condition not met within %s", d)
	}
	return nil
}

// TestServeResumesAConnectorAfterSIGHUP runs the real binary with a bot
// token Telegram refuses: the connector stays bad_credentials without a
// restart loop, and after the operator fixes the token and sends SIGHUP it
// runs, in the same process.
func TestServeResumesAConnectorAfterSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildParley(t)
	const good = "7001:RIGHT-token"
	sim := telegramsim.New(telegramsim.Options{Token: good})
	srv, err := sim.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	listen := mustFreeAddr(t)
	dir := t.TempDir()
	cfgFor := func(token string) string {
		return fmt.Sprintf("data_dir: %q\nhttp: {listen: %q}\nconnectors:\n  - id: tg\n    platform: telegram\n    region: eu\n    telegram: {token: %q, api_url: %q, poll_timeout: 1s}\n",
			filepath.Join(dir, "data"), listen, token, srv.URL)
	}
	cfgPath := filepath.Join(dir, "parley.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgFor("7001:WRONG-token")), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startServe(t, bin, cfgPath)
	base := "http://" + listen
	state := func() string {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var body struct {
			Connectors []struct{ State string } `json:"connectors"`
		}
		if json.NewDecoder(resp.Body).Decode(&body) != nil || len(body.Connectors) != 1 {
			return ""
		}
		return body.Connectors[0].State
	}
	if err := waitCond(30*time.Second, func() bool { return state() == string(normalize.StateBadCredentials) }); err != nil {
		t.Fatalf("the connector never read bad_credentials (%q); output:\n%s", state(), c.stderr.String())
	}
	polls := sim.Requests("getUpdates")
	// Proving a negative: the supervisor's first restart would come after
	// a second; three pass.
	time.Sleep(3 * time.Second)
	if n := sim.Requests("getUpdates"); n != polls || state() != string(normalize.StateBadCredentials) {
		t.Fatalf("getUpdates calls went from %d to %d (state %s): a connector waiting for its operator was restarted", polls, n, state())
	}

	if err := os.WriteFile(cfgPath, []byte(cfgFor(good)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := waitCond(30*time.Second, func() bool { return readyzStatus(base) == http.StatusOK }); err != nil {
		t.Fatalf("not ready after the new token and SIGHUP (state %s); output:\n%s", state(), c.stderr.String())
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
}
