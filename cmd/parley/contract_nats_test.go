package main

// CONTRACT §4, NATS: subjects, streams, buckets and headers, and reply
// commands published straight on NATS.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// gwStreamsAndBuckets checks the region's streams, buckets and object store (§4).
func gwStreamsAndBuckets(t *testing.T, g *gateway) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	want := []struct {
		name      string
		retention jetstream.RetentionPolicy
		maxAge    time.Duration
	}{
		{"PARLEY_EVT_US_EAST", jetstream.LimitsPolicy, 7 * 24 * time.Hour},
		{"PARLEY_CMD_US_EAST", jetstream.WorkQueuePolicy, -1},
		{"PARLEY_DLQ_US_EAST", jetstream.LimitsPolicy, 30 * 24 * time.Hour},
	}
	for _, w := range want {
		s, err := g.js.Stream(ctx, w.name)
		if err != nil {
			t.Errorf("§4 stream %s (region %q upper-cased, - → _): %v", w.name, gwRegion, err)
			continue
		}
		cfg := s.CachedInfo().Config
		if cfg.Retention != w.retention {
			t.Errorf("§4 %s retention %v, want %v", w.name, cfg.Retention, w.retention)
		}
		if w.maxAge >= 0 && cfg.MaxAge != w.maxAge {
			t.Errorf("§4 %s max age %s, want %s", w.name, cfg.MaxAge, w.maxAge)
		}
		if cfg.Replicas != 1 {
			t.Errorf("§4 %s replicas %d, want nats.replicas = 1", w.name, cfg.Replicas)
		}
	}
	for _, purpose := range []string{"directory", "leases", "cursors"} {
		name := "parley_" + purpose + "_" + gwRegion
		if _, err := g.js.KeyValue(ctx, name); err != nil {
			alt := "parley_" + purpose + "_" + strings.ReplaceAll(gwRegion, "-", "_")
			_, altErr := g.js.KeyValue(ctx, alt)
			t.Errorf("§4 \"Key-value buckets and the object store are named parley_<purpose>_<region>\": no bucket %q for region %q (%v); %q exists: %v",
				name, gwRegion, err, alt, altErr == nil)
		}
	}
	name := "parley_media_" + gwRegion
	if _, err := g.js.ObjectStore(ctx, name); err != nil {
		alt := "parley_media_" + strings.ReplaceAll(gwRegion, "-", "_")
		_, altErr := g.js.ObjectStore(ctx, alt)
		t.Errorf("§4 object store parley_<purpose>_<region>: no object store %q (%v); %q exists: %v", name, err, alt, altErr == nil)
	}
}

// gwReplyCommandOnNATS publishes reply commands on the cmd subject, as a helpdesk would (§4, §5).
func gwReplyCommandOnNATS(t *testing.T, g *gateway) {
	const chat = 2006
	conv := g.inbound(t, chat, "via nats").E.Subject
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	publish := func(conv, id string, body map[string]any) {
		data, _ := json.Marshal(body)
		msg := nats.NewMsg(fmt.Sprintf("parley.cmd.%s.telegram.%s.%s.send", gwRegion, gwConnector, conv))
		msg.Header.Set("Nats-Msg-Id", id)
		msg.Data = data
		if _, err := g.js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("§4 publishing a reply command to %s: %v", msg.Subject, err)
		}
		g.submitted(id, false)
	}
	publish(conv, "nats-1", map[string]any{"id": "nats-1", "conversation_id": conv, "text": "from nats"})
	st := g.status(t, "nats-1", 20*time.Second)
	if st.E.Type != "parley.reply.sent" {
		t.Fatalf("§4 nats-1: %s", st)
	}
	if want := fmt.Sprintf("parley.evt.%s.telegram.%s.%s.status", gwRegion, gwConnector, conv); st.Subject != want {
		t.Errorf("§4 status subject %q, want %q", st.Subject, want)
	}
	if sent := g.sim.SentTo(chat); len(sent) != 1 || sent[0].Text != "from nats" {
		t.Errorf("§4 the simulator got %d messages", len(sent))
	}

	// reply.failed codes for what only the outbox can judge.
	publish(conv, "nats-invalid", map[string]any{"id": "nats-invalid", "conversation_id": conv})
	if st := g.status(t, "nats-invalid", 20*time.Second); st.E.Type != "parley.reply.failed" || st.E.Data.Reply.Error == nil || st.E.Data.Reply.Error.Code != "invalid_reply" {
		t.Errorf("§5 a command with neither text nor attachment must end in reply.failed invalid_reply: %s", st)
	}
	unknown := "c_AAAAAAAAAAAAAAAAAAAAAAAB"
	publish(unknown, "nats-unknown", map[string]any{"id": "nats-unknown", "conversation_id": unknown, "text": "x"})
	if st := g.status(t, "nats-unknown", 20*time.Second); st.E.Type != "parley.reply.failed" || st.E.Data.Reply.Error == nil || st.E.Data.Reply.Error.Code != "unknown_conversation" {
		t.Errorf("§5 a command for an unknown conversation must end in reply.failed unknown_conversation: %s", st)
	}
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	g.reply(t, map[string]any{"id": "expired-1", "conversation_id": conv, "text": "too late", "not_after": past})
	if st := g.status(t, "expired-1", 20*time.Second); st.E.Type != "parley.reply.failed" || st.E.Data.Reply.Error == nil || st.E.Data.Reply.Error.Code != "expired" {
		t.Errorf("§5 not_after in the past: give up with reply.failed code \"expired\": %s", st)
	}
}

// gwMessageHeaders checks the headers of every reply command and dead letter
// the earlier subtests made (§4).
func gwMessageHeaders(t *testing.T, g *gateway) {
	g.cmdMu.Lock()
	cmds := slices.Clone(g.cmdMsgs)
	g.cmdMu.Unlock()
	if len(cmds) == 0 {
		t.Fatal("no reply command seen on parley.cmd.>")
	}
	for _, m := range cmds {
		var body struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(m.Data, &body)
		// A replay carries <id>:replay:<dlq seq> so the dedupe window
		// does not drop it (docs/contract-differences.md).
		if id := m.Header.Get("Nats-Msg-Id"); id != body.ID && !strings.HasPrefix(id, body.ID+":replay:") {
			t.Errorf("§4 reply command on %s: Nats-Msg-Id %q, want the reply command id %q", m.Subject, id, body.ID)
		}
		if ct := m.Header.Get("Content-Type"); ct != "application/cloudevents+json" && !strings.HasPrefix(body.ID, "nats-") {
			t.Errorf("§4 reply command %s on %s: Content-Type %q, want application/cloudevents+json", body.ID, m.Subject, ct)
		}
	}
	for _, m := range scanStream(t, g.js, "PARLEY_DLQ_US_EAST", func(*evMsg) bool { return true }) {
		var body struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(m.Raw, &body)
		id, ct := m.Header.Get("Nats-Msg-Id"), m.Header.Get("Content-Type")
		if id != body.ID || ct != "application/cloudevents+json" {
			t.Errorf("§4 \"Every message has Nats-Msg-Id (the event id, or the reply command id) and Content-Type: application/cloudevents+json\": dead letter of %s on %s has Nats-Msg-Id %q, Content-Type %q",
				body.ID, m.Subject, id, ct)
		}
	}
}
