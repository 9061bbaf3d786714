package main

// CONTRACT §5, JSON: the CloudEvents a gateway stores, checked field by
// field (checkEvent, which the other sections use too), and the statuses
// of reply commands.

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// contractKind is the subject kind CONTRACT §4 gives each event type.
func contractKind(typ string) string {
	switch {
	case strings.HasPrefix(typ, "parley.message."), typ == "parley.postback.received":
		return "message"
	case strings.HasPrefix(typ, "parley.reaction."):
		return "reaction"
	case strings.HasPrefix(typ, "parley.receipt."):
		return "receipt"
	case strings.HasPrefix(typ, "parley.reply."):
		return "status"
	case strings.HasPrefix(typ, "parley.media."):
		return "media"
	case typ == "parley.connector.state":
		return "connector"
	}
	return ""
}

var contractTypes = []string{
	"parley.message.received", "parley.message.edited", "parley.message.deleted", "parley.message.echo",
	"parley.postback.received", "parley.reaction.added", "parley.reaction.removed", "parley.receipt.delivered",
	"parley.receipt.read", "parley.reply.sent", "parley.reply.failed", "parley.media.stored", "parley.media.failed",
	"parley.connector.state",
}

var contractErrorCodes = []string{
	"invalid_reply", "unknown_conversation", "window_closed", "recipient_unavailable", "unauthorized",
	"too_large", "unsupported", "rate_limited", "expired", "platform_error",
}

var (
	idRe         = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	rfc3339UTCRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)
)

func validParleyID(prefix, s string) bool {
	return strings.HasPrefix(s, prefix) && len(s) > len(prefix) && idRe.MatchString(s)
}

// checkEvent checks one stored event against §4 (subject, headers) and §5
// (CloudEvents fields) and returns every violation.
func checkEvent(m *evMsg, region, platform, connector string) []string {
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	if m.Err != nil {
		return []string{"§5 not JSON: " + m.Err.Error()}
	}
	e := m.E
	// §4 subject.
	tok := strings.Split(m.Subject, ".")
	conv := e.Subject
	if conv == "" {
		conv = "_"
	}
	want := strings.Join([]string{"parley", "evt", region, platform, connector, conv, contractKind(e.Type)}, ".")
	if m.Subject != want || len(tok) != 7 {
		add("§4 subject %q, want parley.evt.<region>.<platform>.<connector>.<conv>.<kind> = %q", m.Subject, want)
	}
	// §4 headers.
	if got := m.Header.Get("Nats-Msg-Id"); got != e.ID {
		add("§4 Nats-Msg-Id %q, want the event id %q", got, e.ID)
	}
	if got := m.Header.Get("Content-Type"); got != "application/cloudevents+json" {
		add("§4 Content-Type %q, want application/cloudevents+json", got)
	}
	// §5 CloudEvents.
	if e.SpecVersion != "1.0" {
		add("§5 specversion %q", e.SpecVersion)
	}
	if !validParleyID("e_", e.ID) {
		add("§5 id %q is not e_… subject-safe ≤64", e.ID)
	}
	if wantSrc := "parley:" + region + ":" + platform + ":" + connector; e.Source != wantSrc {
		add("§5 source %q, want %q", e.Source, wantSrc)
	}
	if !slices.Contains(contractTypes, e.Type) {
		add("§5 type %q is not a contract type", e.Type)
	}
	if e.Type != "parley.connector.state" && !validParleyID("c_", e.Subject) {
		add("§5 subject %q is not a conversation id c_…", e.Subject)
	}
	if !rfc3339UTCRe.MatchString(e.Time) {
		add("§5 time %q is not RFC 3339 UTC", e.Time)
	}
	if e.DataContentType != "application/json" {
		add("§5 datacontenttype %q", e.DataContentType)
	}
	d := e.Data
	if d.Region != region || d.Platform != platform || d.Connector != connector {
		add("§5 data region/platform/connector %q/%q/%q", d.Region, d.Platform, d.Connector)
	}
	if !rfc3339UTCRe.MatchString(d.ReceivedAt) {
		add("§5 data.received_at %q is not RFC 3339 UTC", d.ReceivedAt)
	}
	if _, ok := m.dig("data", "window_expires_at"); !ok {
		add("§5 data.window_expires_at missing")
	}
	switch contractKind(e.Type) {
	case "message":
		if d.Message == nil {
			add("§5 %s without data.message", e.Type)
			break
		}
		for _, k := range []string{"platform_id", "text", "reply_to", "attachments", "location", "contacts", "postback"} {
			if _, ok := m.dig("data", "message", k); !ok {
				add("§5 data.message.%s missing", k)
			}
		}
		for _, k := range []string{"id", "platform_id", "kind", "title", "thread_id"} {
			if _, ok := m.dig("data", "conversation", k); !ok {
				add("§5 data.conversation.%s missing", k)
			}
		}
		if d.Conversation != nil && d.Conversation.ID != e.Subject {
			add("§5 data.conversation.id %q differs from subject %q", d.Conversation.ID, e.Subject)
		}
		if d.Sender != nil {
			for _, k := range []string{"id", "platform_id", "name", "username", "phone", "language", "is_business"} {
				if _, ok := m.dig("data", "sender", k); !ok {
					add("§5 data.sender.%s missing", k)
				}
			}
			if !validParleyID("u_", d.Sender.ID) {
				add("§5 sender id %q is not u_…", d.Sender.ID)
			}
		}
		atts, _ := m.dig("data", "message", "attachments")
		list, _ := atts.([]any)
		for i, a := range d.Message.Attachments {
			if !validParleyID("m_", a.MediaID) {
				add("§5 attachment media_id %q is not m_…", a.MediaID)
			}
			if !slices.Contains([]string{"image", "video", "audio", "voice", "file", "sticker"}, a.Kind) ||
				!slices.Contains([]string{"pending", "stored", "unavailable"}, a.Status) {
				add("§5 attachment kind %q / status %q", a.Kind, a.Status)
			}
			obj, _ := list[i].(map[string]any)
			for _, k := range []string{"kind", "media_id", "mime_type", "size", "filename", "caption", "width", "height", "duration_ms", "status"} {
				if _, ok := obj[k]; !ok {
					add("§5 attachment field %q missing", k)
				}
			}
		}
	case "reaction":
		if d.Reaction == nil {
			add("§5 %s without data.reaction", e.Type)
		}
	case "status":
		if d.Reply == nil {
			add("§5 %s without data.reply", e.Type)
			break
		}
		for _, k := range []string{"id", "attempts", "platform_ids", "error"} {
			if _, ok := m.dig("data", "reply", k); !ok {
				add("§5 data.reply.%s missing", k)
			}
		}
		if e.Type == "parley.reply.failed" {
			if d.Reply.Error == nil {
				add("§5 reply.failed without error")
				break
			}
			if !slices.Contains(contractErrorCodes, d.Reply.Error.Code) {
				add("§5 reply.failed error.code %q is not a contract code", d.Reply.Error.Code)
			}
			for _, k := range []string{"code", "message", "platform_code", "attempts"} {
				if _, ok := m.dig("data", "reply", "error", k); !ok {
					add("§5 data.reply.error.%s missing", k)
				}
			}
		}
	case "media":
		if d.Media == nil {
			add("§5 %s without data.media", e.Type)
			break
		}
		for _, k := range []string{"id", "attachment_index", "mime_type", "size", "sha256"} {
			if _, ok := m.dig("data", "media", k); !ok && e.Type == "parley.media.stored" {
				add("§5 data.media.%s missing", k)
			}
		}
	case "connector":
		// Documented difference: the state is in data.connector_state.
		if _, ok := m.dig("data", "connector_state", "state"); !ok {
			add("§5 connector.state without data.connector_state.state (docs/contract-differences.md)")
		}
	}
	return bad
}

// gwEventShape checks a message event, and the parts of an edit, a reaction
// and a button press (§5).
func gwEventShape(t *testing.T, g *gateway) {
	const chat = 2012
	u := g.sim.UserText(chat, user(chat), "event shape")
	g.sim.Enqueue(u)
	m := g.events.waitFor(t, 20*time.Second, "message.received", func(m *evMsg) bool { return m.text() == "event shape" })
	for _, p := range checkEvent(m, gwRegion, "telegram", gwConnector) {
		t.Error(p)
	}
	wantTime := time.Unix(int64(u.Message.Date), 0).UTC()
	if tm, err := time.Parse(time.RFC3339, m.E.Time); err != nil || !tm.Equal(wantTime) {
		t.Errorf("§5 time is \"when it happened on the platform\": %q, want %s", m.E.Time, wantTime.Format(time.RFC3339))
	}
	d := m.E.Data
	if d.Conversation == nil || d.Conversation.PlatformID != strconv.Itoa(chat) || d.Conversation.Kind != "direct" {
		t.Errorf("§5 data.conversation: %s", m.Raw)
	}
	if d.Sender == nil || d.Sender.PlatformID != strconv.Itoa(chat) || d.Sender.Username != "ana_contract" ||
		d.Sender.Name != "Ana Contract" || d.Sender.Language != "es" {
		t.Errorf("§5 data.sender: %s", m.Raw)
	}
	if d.Message.PlatformID != strconv.Itoa(u.Message.ID) {
		t.Errorf("§5 data.message.platform_id %q, want %d", d.Message.PlatformID, u.Message.ID)
	}
	conv := m.E.Subject

	// An edit, a reaction and a button press fill their parts and kinds.
	msgID := u.Message.ID
	g.sim.Enqueue(g.sim.EditedText(chat, user(chat), msgID, "event shape (edited)"))
	g.sim.Enqueue(g.sim.Reaction(chat, user(chat), msgID, "👍"))
	g.sim.Enqueue(g.sim.CallbackQuery(chat, user(chat), msgID, "choice-yes"))
	for _, typ := range []string{"parley.message.edited", "parley.reaction.added", "parley.postback.received"} {
		e := g.events.waitFor(t, 20*time.Second, typ, func(m *evMsg) bool { return m.E.Type == typ && m.E.Subject == conv })
		for _, p := range checkEvent(e, gwRegion, "telegram", gwConnector) {
			t.Errorf("%s: %s", typ, p)
		}
	}
	if e := g.events.filter(func(m *evMsg) bool { return m.E.Type == "parley.reaction.added" && m.E.Subject == conv }); len(e) == 1 {
		if r := e[0].E.Data.Reaction; r == nil || r.Emoji != "👍" || r.TargetPlatformID != strconv.Itoa(msgID) {
			t.Errorf("§5 reaction part (target_platform_id, emoji): %s", e[0].Raw)
		}
	}
}

// gwLongTextSplit checks that a reply over the platform limit is split, and reported whole (§5).
func gwLongTextSplit(t *testing.T, g *gateway) {
	const chat = 2002
	conv := g.inbound(t, chat, "tell me a lot").E.Subject
	text := strings.TrimSpace(strings.Repeat("First paragraph words. ", 150)) + "\n\n" + strings.TrimSpace(strings.Repeat("Second paragraph words. ", 100))
	g.reply(t, map[string]any{"id": "split-1", "conversation_id": conv, "text": text})
	st := g.status(t, "split-1", 30*time.Second)
	if st.E.Type != "parley.reply.sent" {
		t.Fatalf("split-1: %s", st)
	}
	sent := g.sim.SentTo(chat)
	var ids, joined []string
	for _, s := range sent {
		ids = append(ids, strconv.Itoa(s.MessageID))
		joined = append(joined, strings.Fields(s.Text)...)
	}
	if len(sent) != 2 {
		t.Errorf("a %d-character text over Telegram's 4096 limit should go out as 2 messages, went as %d", len(text), len(sent))
	}
	if !slices.Equal(st.E.Data.Reply.PlatformIDs, ids) {
		t.Errorf("§5 reply.sent must carry every platform message id, in order: %q, the platform has %q", st.E.Data.Reply.PlatformIDs, ids)
	}
	if !slices.Equal(joined, strings.Fields(text)) {
		t.Errorf("§5 the parts, in order, must make up the text")
	}
}

// gwEventsWellFormed checks every event the earlier subtests stored (§4, §5).
func gwEventsWellFormed(t *testing.T, g *gateway) {
	all := g.events.all()
	if len(all) < 20 {
		t.Fatalf("only %d events", len(all))
	}
	seen := map[string]int{}
	kinds := map[string]bool{}
	for _, m := range all {
		for _, p := range checkEvent(m, gwRegion, "telegram", gwConnector) {
			t.Errorf("%s\n  event: %.300s", p, m)
		}
		seen[m.E.ID]++
		kinds[contractKind(m.E.Type)] = true
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("§5 event id %s stored %d times", id, n)
		}
	}
	for _, k := range []string{"message", "reaction", "status", "media", "connector"} {
		if !kinds[k] {
			t.Errorf("§4 no event of kind %q seen", k)
		}
	}
}

// gwOneStatusPerReply checks the statuses of every reply the earlier subtests submitted (§5).
func gwOneStatusPerReply(t *testing.T, g *gateway) {
	g.replyMu.Lock()
	ids := copyMap(g.replyIDs)
	g.replyMu.Unlock()
	for id, replayed := range ids {
		var types []string
		for _, m := range g.events.filter(func(m *evMsg) bool { return strings.HasPrefix(m.E.Type, "parley.reply.") && m.replyID() == id }) {
			types = append(types, m.E.Type)
		}
		switch {
		case replayed && !slices.Equal(types, []string{"parley.reply.failed", "parley.reply.sent"}):
			t.Errorf("§5 reply %s (failed, then replayed): statuses %q", id, types)
		case !replayed && len(types) != 1:
			t.Errorf("§5 \"Every reply command ends in exactly one parley.reply.sent or parley.reply.failed\": %s has %q", id, types)
		}
	}
}
