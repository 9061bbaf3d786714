package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
	"github.com/parley-gateway/parley/outbox"
)

// TestShutdownWaitsForASendInFlightBeforeClosingNATS stops the gateway
// while the platform takes longer to answer a send than the shutdown
// timeout: NATS stays open until the part's sent-marker is written, so a
// restart would not send it again.
func TestShutdownWaitsForASendInFlightBeforeClosingNATS(t *testing.T) {
	const sendDelay = 1500 * time.Millisecond
	sim, err := fakechatsim.Start(fakechatsim.Options{SendDelay: sendDelay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	dir := filepath.Join(t.TempDir(), "data")
	cfg := parseConfig(t, fmt.Sprintf(`
data_dir: %q
nats: {embedded: {sync: always}}
http: {listen: "127.0.0.1:0"}
connectors:
  - id: fc-one
    platform: fakechat
    region: eu
    fakechat:
%s`, dir, indent(sim.Settings(), "      ")))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	a, err := New(ctx, cfg, Options{Platforms: platforms, ShutdownTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sim.Attach("http://" + a.HTTPAddr() + "/webhooks/fc-one")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()

	customer := fakechatsim.User{ID: "u-1"}
	wait.For(t, 10*time.Second, "the first message to be stored", func() bool {
		out, err := sim.Push(ctx, fakechatsim.DefaultAccount, sim.Text(customer, "hello"))
		return err == nil && out.Acked
	})
	conv := fakechatsim.ConversationID(fakechatsim.DefaultAccount, customer.ID)
	if _, err := outbox.Submit(ctx, a.Bus(), a.Directory("eu"), &normalize.Reply{ID: "r-slow", ConversationID: conv, Text: "on its way"}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the send to reach the platform", func() bool {
		return sim.Requests().Count(simkit.Match("POST", "/v1/")) >= 1
	})
	stop() // while the platform is still answering
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s")
	}

	// Open the same store again: the marker must record the sent part.
	b, err := bus.Open(ctx, BusOptions(cfg, "check", slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	r, err := b.Provision(ctx, "eu")
	if err != nil {
		t.Fatal(err)
	}
	e, err := r.Outbox.Get(ctx, "sent."+bus.Token("r-slow"))
	if err != nil {
		t.Fatalf("no sent-marker for the reply sent during shutdown: %v", err)
	}
	var m struct {
		PlatformIDs []string `json:"platform_ids"`
		Done        bool     `json:"done"`
	}
	if err := json.Unmarshal(e.Value(), &m); err != nil || !m.Done || len(m.PlatformIDs) != 1 {
		t.Errorf("marker %s (%v), want the part recorded as sent", e.Value(), err)
	}
	if n := len(sim.AllSent()); n != 1 {
		t.Errorf("the platform holds %d messages, want 1", n)
	}
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}
