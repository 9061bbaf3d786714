package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/ingest"
)

// TestDLQShowsAndPurgesInboundDeadLetters: an operator sees the platform
// updates kept aside, apart from dead-lettered replies, and drops them.
func TestDLQShowsAndPurgesInboundDeadLetters(t *testing.T) {
	url, _, _ := bustest.StartServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	bustest.ProvisionRegion(t, b, "eu")
	rj := ingest.NewRejects(b, "eu", "telegram", "tg-eu", nil)
	if err := rj.Reject(ctx, connectors.Rejected{Raw: []byte(`{"update_id":7}`), Reason: connectors.RejectUnmappable,
		Detail: "a reaction this SDK cannot decode", UpdateID: "7"}); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "nats: {url: "+url+"}\nconnectors:\n  - {id: tg-eu, platform: telegram, region: eu, telegram: {token: \"1:abc\"}}\n")

	cli := func(args ...string) (string, string, int) {
		env, out, errOut := testEnv(nil)
		code := run(ctx, env, append(args, "--config", cfg))
		return out.String(), errOut.String(), code
	}
	out, errOut, code := cli("dlq", "list", "--inbound")
	if code != exitOK || !strings.Contains(out, "tg-eu") || !strings.Contains(out, "unmappable") || !strings.Contains(out, "1 platform updates kept aside") {
		t.Fatalf("dlq list --inbound: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ := cli("dlq", "list"); !strings.Contains(out, "0 dead-lettered replies") {
		t.Errorf("dlq list shows an inbound dead letter among the replies:\n%s", out)
	}
	if _, errOut, code := cli("dlq", "replay", "--inbound", "1"); code != exitUsage || !strings.Contains(errOut, "cannot be replayed") {
		t.Errorf("dlq replay --inbound: exit %d: %s", code, errOut)
	}
	if _, errOut, code := cli("dlq", "purge", "--inbound", "99"); code != exitUsage {
		t.Errorf("dlq purge --inbound of an unknown seq: exit %d: %s", code, errOut)
	}
	if out, errOut, code := cli("dlq", "purge", "--inbound", "1"); code != exitOK {
		t.Fatalf("dlq purge --inbound 1: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ := cli("dlq", "list", "--inbound"); !strings.Contains(out, "0 platform updates kept aside") {
		t.Errorf("after purge:\n%s", out)
	}
}
