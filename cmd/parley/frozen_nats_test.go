package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildNATSServer builds the nats-server Parley depends on, from the module
// cache: a real server in its own process, which a test can freeze.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("building nats-server: %v\n%s", err, out)
	}
	return bin
}

// TestAFrozenNATSServerIsNoticed freezes a NATS server child process with
// SIGSTOP, which keeps its TCP connections open while nothing answers: a
// webhook gets 503 within its answer budget instead of hanging until the
// server thaws, /readyz reads 503 within seconds, and both recover after
// SIGCONT.
func TestAFrozenNATSServerIsNoticed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs nats-server and parley")
	}
	natsBin, bin := buildNATSServer(t), buildParley(t)
	natsAddr := mustFreeAddr(t)
	_, port, _ := strings.Cut(natsAddr, ":")
	dir := t.TempDir()
	ns := exec.Command(natsBin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", filepath.Join(dir, "js"))
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ns.Process.Signal(syscall.SIGCONT)
		_ = ns.Process.Kill()
		_ = ns.Wait()
	})

	httpAddr := mustFreeAddr(t)
	cfgPath := filepath.Join(dir, "parley.yaml")
	cfg := fmt.Sprintf(`data_dir: %q
nats: {url: "nats://%s"}
http: {listen: %q}
connectors:
  - id: tg
    platform: telegram
    region: eu
    telegram: {token: "4242:FROZEN-TOKEN", mode: webhook, webhook_secret: s3cret, api_url: "http://127.0.0.1:9"}
`, filepath.Join(dir, "data"), natsAddr, httpAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The server takes a moment to listen; parley serve retries its
	// first connection.
	c := startServe(t, bin, cfgPath)
	base := "http://" + httpAddr
	waitReady(t, base, c)

	update := 100
	post := func() (int, time.Duration) {
		update++
		body := fmt.Sprintf(`{"update_id":%d,"message":{"message_id":%d,"date":1700000000,"chat":{"id":5,"type":"private"},"from":{"id":5,"is_bot":false,"first_name":"M"},"text":"hi"}}`, update, update)
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/tg", strings.NewReader(body))
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", "s3cret")
		began := time.Now()
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("posting an update: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(began)
	}
	if code, _ := post(); code != http.StatusOK {
		t.Fatalf("webhook before the freeze answered %d", code)
	}

	if err := ns.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Within seconds: the readiness probe makes its own round trip to
	// NATS, sooner than the client's pings notice.
	frozen := time.Now()
	if err := waitCond(3*time.Second, func() bool { return readyzStatus(base) == http.StatusServiceUnavailable }); err != nil {
		t.Errorf("/readyz still 200 3s into the freeze")
	}
	unready := time.Since(frozen)
	const budget = 10 * time.Second // Telegram's answer budget
	code, took := post()
	if code != http.StatusServiceUnavailable || took > budget {
		t.Errorf("webhook during the freeze answered %d after %s, want 503 within the %s budget", code, took, budget)
	}
	t.Logf("/readyz 503 %s into the freeze; a webhook answered %d after %s", unready.Round(time.Millisecond), code, took.Round(time.Millisecond))

	if err := ns.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := waitCond(30*time.Second, func() bool { return readyzStatus(base) == http.StatusOK }); err != nil {
		t.Fatalf("/readyz not 200 within 30s of SIGCONT; output:\n%s", c.stderr.String())
	}
	if code, _ := post(); code != http.StatusOK {
		t.Errorf("webhook after the thaw answered %d, want 200", code)
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
}
