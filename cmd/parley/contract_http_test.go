package main

// CONTRACT §3, HTTP: webhooks, the helpdesk API, health, readiness and
// metrics of the shared gateway. The answers during a NATS outage are in
// contract_guarantees_test.go.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
)

// gwHealth checks /healthz, /readyz and /metrics (§3).
func gwHealth(t *testing.T, g *gateway) {
	if r := doHTTP(t, http.MethodGet, g.base+"/healthz", "", nil, nil); r.status != http.StatusOK {
		t.Errorf("§3 GET /healthz: %s, want 200", r)
	}
	r := doHTTP(t, http.MethodGet, g.base+"/readyz", "", nil, nil)
	if r.status != http.StatusOK {
		t.Errorf("§3 GET /readyz of a ready gateway: %s", r)
	}
	var ready map[string]any
	if err := json.Unmarshal(r.body, &ready); err != nil {
		t.Fatalf("§3 /readyz body is not JSON: %s", r)
	}
	natsState, ok := ready["nats"].(map[string]any)
	if !ok || (natsState["state"] == nil && natsState["connected"] == nil) {
		t.Errorf("§3 /readyz JSON must carry the NATS state: %s", r.body)
	}
	conns, _ := json.Marshal(ready["connectors"])
	if !strings.Contains(string(conns), `"`+gwConnector+`"`) || !strings.Contains(string(conns), `"running"`) {
		t.Errorf("§3 /readyz JSON must carry each connector's state: %s", r.body)
	}
	if strings.Contains(string(conns), "tg-off") {
		t.Errorf("/readyz lists the disabled connector tg-off: %s", conns)
	}
	m := doHTTP(t, http.MethodGet, g.base+"/metrics", "", nil, nil)
	ct := m.header.Get("Content-Type")
	if m.status != http.StatusOK || !(strings.HasPrefix(ct, "text/plain") || strings.HasPrefix(ct, "application/openmetrics-text")) ||
		!regexp.MustCompile(`(?m)^# TYPE parley_\w+ \w+$`).Match(m.body) {
		t.Errorf("§3 GET /metrics must be a Prometheus exposition: %d %q\n%.500s", m.status, ct, m.body)
	}
}

// gwWebhooks checks every answer of POST /webhooks/{connector_id} (§3).
func gwWebhooks(t *testing.T, g *gateway) {
	t.Run("200 only after the event is stored", func(t *testing.T) {
		text := "stored-before-200"
		r := g.webhook(t, gwSecret, updateJSON(g.updateID.Add(1), 7001, 1, time.Now().Unix(), text))
		if r.status != http.StatusOK {
			t.Fatalf("§3 a valid webhook: %s, want 200", r)
		}
		// Read the stream right after the 200: the event must be there.
		found := scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return m.text() == text })
		if len(found) != 1 {
			t.Fatalf("§3 \"200 only after every event in the request is stored\": right after the 200 the stream holds %d events with the text, want 1", len(found))
		}
	})
	t.Run("a redelivery yields no second event and the same id", func(t *testing.T) {
		text := "redelivered-update"
		body := updateJSON(g.updateID.Add(1), 7002, 1, time.Now().Unix(), text)
		for i := range 3 {
			if r := g.webhook(t, gwSecret, body); r.status != http.StatusOK {
				t.Fatalf("delivery %d: %s", i+1, r)
			}
		}
		// Each 200 came after JetStream had stored the update, or dropped
		// it as a duplicate: the stream holds all it ever will of them.
		found := scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return m.text() == text })
		if len(found) != 1 {
			t.Errorf("§5/§6 \"a redelivery within dedupe_window is dropped by Nats-Msg-Id\": 3 deliveries of one update stored %d events", len(found))
		}
	})
	t.Run("200 for a deliberately ignored update (our own bot's message), nothing stored", func(t *testing.T) {
		text := "said by the bot itself"
		u := map[string]any{"update_id": g.updateID.Add(1), "message": map[string]any{
			"message_id": 1, "date": time.Now().Unix(), "text": text,
			"chat": map[string]any{"id": -1001234567890, "type": "supergroup", "title": "Shop"},
			"from": map[string]any{"id": 5151, "is_bot": true, "first_name": "Parley Sim", "username": "parley_sim_bot"},
		}}
		body, _ := json.Marshal(u)
		if r := g.webhook(t, gwSecret, body); r.status != http.StatusOK {
			t.Errorf("§3 200 for an update that is deliberately ignored (our own bot's message): %s", r)
		}
		if n := len(scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return m.text() == text })); n != 0 {
			t.Errorf("our own bot's message was stored as %d events", n)
		}
	})
	t.Run("401 forged or missing secret, nothing stored", func(t *testing.T) {
		for i, secret := range []string{"forged-secret", ""} {
			text := fmt.Sprintf("forged-%d", i)
			r := g.webhook(t, secret, updateJSON(g.updateID.Add(1), 7003, 10+i, time.Now().Unix(), text))
			if r.status != http.StatusUnauthorized {
				t.Errorf("§3 401 bad signature or secret: secret %q answered %s", secret, r)
			}
			if n := len(scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return m.text() == text })); n != 0 {
				t.Errorf("§3 401 … (nothing stored): %d events stored", n)
			}
		}
	})
	t.Run("400 malformed body", func(t *testing.T) {
		for _, body := range []string{`{"update_id": 5, "message": `, `not json`} {
			if r := g.webhook(t, gwSecret, []byte(body)); r.status != http.StatusBadRequest {
				t.Errorf("§3 400 malformed body: %q answered %s", body, r)
			}
		}
	})
	t.Run("404 unknown or disabled connector", func(t *testing.T) {
		for _, id := range []string{"no-such-connector", "tg-off"} {
			r := doHTTP(t, http.MethodPost, g.base+"/webhooks/"+id, "", map[string]string{
				"X-Telegram-Bot-Api-Secret-Token": "off-secret", "Content-Type": "application/json",
			}, bytes.NewReader(updateJSON(g.updateID.Add(1), 7004, 1, time.Now().Unix(), "x")))
			if r.status != http.StatusNotFound {
				t.Errorf("§3 404 unknown or disabled connector: /webhooks/%s answered %s", id, r)
			}
		}
	})
	t.Run("413 body over max_body_bytes", func(t *testing.T) {
		big := updateJSON(g.updateID.Add(1), 7005, 1, time.Now().Unix(), strings.Repeat("x", gwMaxBody+100))
		if r := g.webhook(t, gwSecret, big); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("§3 413 body over max_body_bytes (with Content-Length): %d", r.status)
		}
		// The same without Content-Length (chunked).
		req, _ := http.NewRequest(http.MethodPost, g.base+"/webhooks/"+gwConnector, io.MultiReader(bytes.NewReader(big)))
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", gwSecret)
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("§3 413 body over max_body_bytes (chunked): %d", resp.StatusCode)
		}
		if n := len(scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return strings.HasPrefix(m.text(), "xxxxxxxx") })); n != 0 {
			t.Errorf("an over-limit body was stored (%d events)", n)
		}
	})
	t.Run("GET is no verification handshake for Telegram", func(t *testing.T) {
		r := doHTTP(t, http.MethodGet, g.base+"/webhooks/"+gwConnector+"?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1158201444", "", nil, nil)
		if r.status == http.StatusOK && strings.Contains(string(r.body), "1158201444") {
			t.Errorf("§3 GET /webhooks/{id} echoed a Meta challenge for a Telegram connector: %s", r)
		}
		t.Logf("GET /webhooks/%s with a Meta handshake answers %s", gwConnector, r)
		if r := doHTTP(t, http.MethodGet, g.base+"/webhooks/no-such?hub.mode=subscribe&hub.challenge=1", "", nil, nil); r.status != http.StatusNotFound {
			t.Errorf("§3 GET /webhooks/<unknown>: %s, want 404", r)
		}
	})
}

// gwConversation checks the directory entry that the helpdesk API returns (§3).
func gwConversation(t *testing.T, g *gateway) {
	const chat = 2007
	m := g.inbound(t, chat, "directory entry")
	conv := m.E.Subject
	r := g.api(t, http.MethodGet, "/v1/conversations/"+conv, gwAPIToken, nil)
	if r.status != http.StatusOK {
		t.Fatalf("§3 GET /v1/conversations/%s: %s", conv, r)
	}
	var e map[string]any
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatal(err)
	}
	if e["platform"] != "telegram" || e["connector"] != gwConnector || e["region"] != gwRegion {
		t.Errorf("§3 the directory entry has platform, connector, region: %s", r.body)
	}
	if e["platform_id"] != strconv.Itoa(chat) {
		t.Errorf("§3 the directory entry has the platform address: %s", r.body)
	}
	last, _ := e["last_inbound_at"].(string)
	if tm, err := time.Parse(time.RFC3339, last); err != nil || time.Since(tm) > time.Minute {
		t.Errorf("§3 the directory entry has the last inbound time: %s", r.body)
	}
	if _, ok := e["window_expires_at"]; !ok {
		t.Errorf("§3 the directory entry has window_expires_at: %s", r.body)
	}
	if r := g.api(t, http.MethodGet, "/v1/conversations/"+conv, "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("§3 /v1/* needs bearer auth: %s", r)
	}
	if r := g.api(t, http.MethodGet, "/v1/conversations/c_AAAAAAAAAAAAAAAAAAAAAAAA", gwAPIToken, nil); r.status != http.StatusNotFound {
		t.Errorf("GET of an unknown conversation: %s, want 404", r)
	}
}

// gwReplies checks POST /v1/replies: 202, a duplicate, and each error answer (§3).
func gwReplies(t *testing.T, g *gateway) {
	const chat = 2007
	conv := g.inbound(t, chat, "replies api").E.Subject
	body := map[string]any{"id": "api-1", "conversation_id": conv, "text": "hello **api**"}
	r := g.api(t, http.MethodPost, "/v1/replies", gwAPIToken, body)
	g.submitted("api-1", false)
	var got map[string]any
	_ = json.Unmarshal(r.body, &got)
	if r.status != http.StatusAccepted || got["id"] != "api-1" || got["conversation_id"] != conv || got["duplicate"] == true {
		t.Errorf("§3 POST /v1/replies: 202 {\"id\",\"conversation_id\"} once stored; got %s", r)
	}
	r = g.api(t, http.MethodPost, "/v1/replies", gwAPIToken, body)
	got = nil
	_ = json.Unmarshal(r.body, &got)
	if r.status != http.StatusAccepted || got["duplicate"] != true || got["id"] != "api-1" {
		t.Errorf("§3 the same id again is 202 with \"duplicate\": true; got %s", r)
	}
	st := g.status(t, "api-1", 20*time.Second)
	if st.E.Type != "parley.reply.sent" {
		t.Fatalf("reply api-1: %s", st)
	}
	g.settled(t, conv)
	n := 0
	for _, s := range g.sim.SentTo(chat) {
		if strings.Contains(s.Text, "api") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("§6 a reply submitted twice with one id must be sent once: sent %d times", n)
	}

	for _, tc := range []struct {
		name   string
		token  string
		body   any
		status int
	}{
		{"invalid id", gwAPIToken, map[string]any{"id": "bad id!", "conversation_id": conv, "text": "x"}, http.StatusBadRequest},
		{"missing conversation_id", gwAPIToken, map[string]any{"id": "api-bad-2", "text": "x"}, http.StatusBadRequest},
		{"malformed JSON", gwAPIToken, `{"id":`, http.StatusBadRequest},
		{"no token", "", body, http.StatusUnauthorized},
		{"wrong token", "not-the-token", body, http.StatusUnauthorized},
		{"unknown conversation", gwAPIToken, map[string]any{"id": "api-404", "conversation_id": "c_AAAAAAAAAAAAAAAAAAAAAAAA", "text": "x"}, http.StatusNotFound},
	} {
		r := g.api(t, http.MethodPost, "/v1/replies", tc.token, tc.body)
		if r.status != tc.status {
			t.Errorf("§3 POST /v1/replies, %s: %s, want %d", tc.name, r, tc.status)
		}
		checkErrorShape(t, "POST /v1/replies, "+tc.name, r)
	}
}

// gwMedia checks that media is stored after its message and served by the
// API, or announced as failed (§3, §5).
func gwMedia(t *testing.T, g *gateway) {
	const chat = 2008
	data := bytes.Repeat([]byte("parley-media-bytes-"), 200)
	g.sim.Enqueue(g.sim.Photo(chat, user(chat), "a label", data))
	m := g.events.waitFor(t, 20*time.Second, "photo message", func(m *evMsg) bool {
		return m.E.Type == "parley.message.received" && m.E.Data.Message != nil && len(m.E.Data.Message.Attachments) == 1 &&
			m.E.Data.Message.Attachments[0].Kind == "image"
	})
	a := m.E.Data.Message.Attachments[0]
	if a.Status != "pending" {
		t.Errorf("§5 publishing a message never waits on media: attachment status %q, want pending", a.Status)
	}
	st := g.events.waitFor(t, 20*time.Second, "media.stored", func(e *evMsg) bool {
		return strings.HasPrefix(e.E.Type, "parley.media.") && e.E.Data.Media != nil && e.E.Data.Media.ID == a.MediaID
	})
	if st.E.Type != "parley.media.stored" {
		t.Fatalf("media: %s", st)
	}
	for _, p := range checkEvent(st, gwRegion, "telegram", gwConnector) {
		t.Error(p)
	}
	sum := sha256.Sum256(data)
	if md := st.E.Data.Media; md.Size != int64(len(data)) || md.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("§5 media.stored size/sha256: %s", st.Raw)
	}
	r := g.api(t, http.MethodGet, "/v1/media/"+a.MediaID, gwAPIToken, nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, data) {
		t.Errorf("§3 GET /v1/media/{id} returns the stored bytes: %d, %d bytes (want %d)", r.status, len(r.body), len(data))
	}
	if ct := r.header.Get("Content-Type"); ct == "" || ct != st.E.Data.Media.MimeType {
		t.Errorf("§3 GET /v1/media/{id} with its content type: %q, media.stored says %q", ct, st.E.Data.Media.MimeType)
	}
	if r := g.api(t, http.MethodGet, "/v1/media/"+a.MediaID, "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("§3 /v1/media needs bearer auth: %d", r.status)
	}
	if r := g.api(t, http.MethodGet, "/v1/media/m_AAAAAAAAAAAAAAAAAAAAAAAA", gwAPIToken, nil); r.status != http.StatusNotFound {
		t.Errorf("GET of unknown media: %d, want 404", r.status)
	}

	// A file Telegram will not let a bot download (over 20 MB).
	u := g.sim.Document(chat, user(chat), "huge.bin", "application/octet-stream", []byte("small stand-in"))
	g.sim.AddFile(u.Message.Document.FileID, []byte("small stand-in"), telegramsim.MaxDownloadSize+1)
	g.sim.Enqueue(u)
	dm := g.events.waitFor(t, 20*time.Second, "document message", func(m *evMsg) bool {
		return m.E.Type == "parley.message.received" && m.E.Data.Message != nil && len(m.E.Data.Message.Attachments) == 1 &&
			m.E.Data.Message.Attachments[0].Kind == "file"
	})
	mid := dm.E.Data.Message.Attachments[0].MediaID
	fe := g.events.waitFor(t, 20*time.Second, "media.failed of an undownloadable file", func(e *evMsg) bool {
		return strings.HasPrefix(e.E.Type, "parley.media.") && e.E.Data.Media != nil && e.E.Data.Media.ID == mid
	})
	if fe.E.Type != "parley.media.failed" {
		t.Errorf("§5 an attachment whose bytes cannot be fetched is announced by parley.media.failed: got %s", fe)
	}
}
