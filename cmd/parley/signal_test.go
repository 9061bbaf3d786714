//go:build unix

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/wait"
)

// TestCommandsStopOnASignalWhileLoadingTheirConfig gives each command that
// reads a configuration a named pipe that nobody writes to: reading it
// blocks for ever, as a huge file or a hung mount would. SIGTERM or SIGINT
// must still end the command within two seconds, with exit 1 and a line
// saying it was interrupted.
func TestCommandsStopOnASignalWhileLoadingTheirConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildParley(t)
	for _, tc := range []struct {
		args []string
		sig  syscall.Signal
	}{
		{[]string{"config", "check"}, syscall.SIGTERM},
		{[]string{"config", "check"}, syscall.SIGINT},
		{[]string{"serve"}, syscall.SIGTERM},
		{[]string{"tail"}, syscall.SIGTERM},
		{[]string{"reply", "--conversation", "c_x", "--text", "hi"}, syscall.SIGTERM},
		{[]string{"dlq", "list"}, syscall.SIGTERM},
		{[]string{"pair", "telegram", "--connector", "tg-eu"}, syscall.SIGTERM},
		{[]string{"healthcheck"}, syscall.SIGTERM},
	} {
		t.Run(strings.Join(tc.args, " ")+" on "+tc.sig.String(), func(t *testing.T) {
			t.Parallel()
			fifo := filepath.Join(t.TempDir(), "parley.yaml")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			p := startProc(t, bin, "", nil, append(tc.args, "--config", fifo)...)

			// Opening the pipe for writing without blocking succeeds once
			// parley has opened it for reading: it has set up its signal
			// handling by then and is stuck in the read, since nothing is
			// ever written. The write end stays open so that the read does
			// not end at EOF.
			var w *os.File
			opened, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if !wait.Poll(opened, func() bool {
				w, _ = os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
				return w != nil
			}) {
				t.Fatalf("parley did not open its config within 10s\n%s", p.output())
			}
			t.Cleanup(func() { w.Close() })

			sent := time.Now()
			if err := p.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			code, ok := p.wait(2 * time.Second)
			if !ok {
				t.Fatalf("still running 2s after %v\n%s", tc.sig, p.output())
			}
			t.Logf("stopped %s after %v", time.Since(sent).Round(time.Millisecond), tc.sig)
			if code != exitRuntime {
				t.Errorf("exit %d after %v, want %d\n%s", code, tc.sig, exitRuntime, p.output())
			}
			if want := "loading " + fifo + ": interrupted"; !strings.Contains(p.stderr.String(), want) {
				t.Errorf("stderr does not say %q:\n%s", want, p.output())
			}
		})
	}
}

// TestReplyStopsWaitingForTheStatusOnCancel: `parley reply` waits up to
// --wait for a status; an interrupt ends the wait at once and says the reply
// is stored, rather than claiming the wait ran out.
func TestReplyStopsWaitingForTheStatusOnCancel(t *testing.T) {
	b := bustest.Start(t)
	bustest.ProvisionRegion(t, b, "eu")

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := waitStatus(ctx, b, "eu", "r-1", start, time.Minute)
	took := time.Since(start)
	if !errors.Is(err, errInterrupted) || !strings.Contains(err.Error(), "stored in the outbox") {
		t.Errorf("waitStatus after cancel: %v, want errInterrupted saying the reply is stored", err)
	}
	if took > 2*time.Second {
		t.Errorf("waitStatus returned %s after the start, want within 2s of the cancel at 200ms", took)
	}
}
