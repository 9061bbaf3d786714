package main

// CONTRACT §6, guarantees: ordering, rate limits and retries on the
// shared gateway; then a NATS outage, restarts and a renamed connector
// (contractOutage), and two instances sharing one poller (contractScale).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/internal/bustest"
)

// gwOrderedPerConversation sends ten replies to one chat, and one to another
// that must not wait for them (§6).
func gwOrderedPerConversation(t *testing.T, g *gateway) {
	const chat, other = 2001, 2010
	conv := g.inbound(t, chat, "order please").E.Subject
	otherConv := g.inbound(t, other, "me too").E.Subject
	const n = 10
	for i := 1; i <= n; i++ {
		g.reply(t, map[string]any{"id": fmt.Sprintf("ord-%02d", i), "conversation_id": conv, "text": fmt.Sprintf("order %02d", i)})
	}
	start := time.Now()
	g.reply(t, map[string]any{"id": "par-1", "conversation_id": otherConv, "text": "parallel"})
	if st := g.status(t, "par-1", 20*time.Second); st.E.Type != "parley.reply.sent" {
		t.Errorf("par-1: %s", st)
	}
	pendingThen := n - len(g.sim.SentTo(chat))
	if took := time.Since(start); took > 4*time.Second || pendingThen == 0 {
		t.Errorf("§6 \"other conversations proceed in parallel\": a reply to another chat took %s (%d of the first chat's still pending)", took, pendingThen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if _, err := g.sim.WaitSentTo(ctx, chat, n); err != nil {
		t.Fatalf("§6 ordering: %v", err)
	}
	for i := 1; i <= n; i++ {
		if st := g.status(t, fmt.Sprintf("ord-%02d", i), 10*time.Second); st.E.Type != "parley.reply.sent" {
			t.Errorf("ord-%02d: %s", i, st)
		}
	}
	g.settled(t, conv)
	sent := g.sim.SentTo(chat)
	var texts []string
	for _, s := range sent {
		texts = append(texts, s.Text)
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("order %02d", i))
	}
	if !slices.Equal(texts, want) {
		t.Errorf("§6 \"replies to one conversation are sent in the order their commands were stored\" (no loss, no duplicate):\n got %q\nwant %q", texts, want)
	}
}

// gwRetryAfterHonoured injects a 429 with retry_after 2 (§6).
func gwRetryAfterHonoured(t *testing.T, g *gateway) {
	const chat = 2003
	conv := g.inbound(t, chat, "rate me").E.Subject
	g.sim.FailChat(chat, telegramsim.TooManyRequests(2), 1)
	g.injected429.Add(1)
	start := time.Now()
	g.reply(t, map[string]any{"id": "r429-1", "conversation_id": conv, "text": "after the flood"})
	st := g.status(t, "r429-1", 30*time.Second)
	if st.E.Type != "parley.reply.sent" {
		t.Fatalf("r429-1: %s", st)
	}
	sent := g.sim.SentTo(chat)
	if len(sent) != 1 {
		t.Fatalf("sent %d messages, want 1", len(sent))
	}
	if wait := sent[0].Time.Sub(start); wait < 2*time.Second-50*time.Millisecond || wait > 8*time.Second {
		t.Errorf("§6 \"a platform's retry-after is honoured\": retry_after 2s, sent %s after the command", wait.Round(time.Millisecond))
	}
	if st.E.Data.Reply.Attempts < 2 {
		t.Errorf("§5 reply.sent attempts %d after a 429, want ≥ 2", st.E.Data.Reply.Attempts)
	}
}

// gwTransientRetried injects a 500 and a 502 before the send that succeeds (§6).
func gwTransientRetried(t *testing.T, g *gateway) {
	const chat = 2009
	conv := g.inbound(t, chat, "flaky").E.Subject
	g.sim.FailChat(chat, telegramsim.InternalServerError(), 1)
	g.sim.FailChat(chat, telegramsim.BadGatewayHTML(), 1)
	g.reply(t, map[string]any{"id": "flaky-1", "conversation_id": conv, "text": "despite errors"})
	st := g.status(t, "flaky-1", 30*time.Second)
	if st.E.Type != "parley.reply.sent" || st.E.Data.Reply.Attempts < 3 {
		t.Errorf("§6 transient failures are retried: %s", st)
	}
	g.settled(t, conv)
	if n := len(g.sim.SentTo(chat)); n != 1 {
		t.Errorf("§6 sent %d times, want 1", n)
	}
}

// gwBurstPerBotLimit replies to 60 chats at once (§6).
func gwBurstPerBotLimit(t *testing.T, g *gateway) {
	const first, n = 3000, 60
	for i := range n {
		chat := int64(first + i)
		g.sim.Enqueue(g.sim.UserText(chat, user(chat), fmt.Sprintf("burst hello %d", i)))
	}
	convs := make([]string, n)
	for i := range n {
		text := fmt.Sprintf("burst hello %d", i)
		convs[i] = g.events.waitFor(t, 30*time.Second, text, func(m *evMsg) bool {
			return m.E.Type == "parley.message.received" && m.text() == text
		}).E.Subject
	}
	before := g.sim.Responses("sendMessage")[http.StatusTooManyRequests]
	started := time.Now()
	for i := range n {
		g.reply(t, map[string]any{"id": fmt.Sprintf("burst-%02d", i), "conversation_id": convs[i], "text": fmt.Sprintf("burst reply %d", i)})
	}
	for i := range n {
		if st := g.status(t, fmt.Sprintf("burst-%02d", i), 60*time.Second); st.E.Type != "parley.reply.sent" {
			t.Errorf("burst-%02d: %s", i, st)
		}
	}
	limited := g.sim.Responses("sendMessage")[http.StatusTooManyRequests] - before
	g.burst429.Store(int32(limited))
	if limited > 0 {
		t.Errorf("§6 \"per-platform … rate limits are respected\": %d replies to %d chats (Telegram: 30 messages/s per bot, enforced by the simulator over a sliding second) met %d answers 429 retry_after; all were delivered after %s",
			n, n, limited, time.Since(started).Round(time.Millisecond))
	}
	for i := range n {
		if sent := g.sim.SentTo(int64(first + i)); len(sent) != 1 {
			t.Errorf("§6 chat %d got %d messages, want 1", first+i, len(sent))
		}
	}
}

// gwPerChatLimit checks that every 429 the simulator answered outside the burst was injected (§6).
func gwPerChatLimit(t *testing.T, g *gateway) {
	got := g.sim.Responses("sendMessage")[http.StatusTooManyRequests] - int(g.burst429.Load())
	if want := int(g.injected429.Load()); got != want {
		t.Errorf("§6 \"per-platform and per-chat rate limits are respected\" (Telegram: 1 msg/s per chat, 30 msg/s per bot, as the simulator enforces): the simulator answered %d sends with 429, only %d of them injected by the test",
			got, want)
	}
}

// ---------------------------------------------------------------------------
// NATS outage, restarts and a renamed connector

// contractOutage runs `parley serve --region eu` on an external NATS server
// that it stops and restarts, then restarts the gateway and renames its
// connector.
func contractOutage(t *testing.T, bin string) {
	natsURL, stopNATS, restartNATS := bustest.StartServer(t)
	const token = "6161:OUTAGE-SECRET"
	sim, err := telegramsim.NewServer(telegramsim.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	httpAddr := mustFreeAddr(t)
	base := "http://" + httpAddr
	cfg := func(connector string) string {
		return writeFile(t, filepath.Join(dir, connector+".yaml"), fmt.Sprintf(`data_dir: %q
nats: {url: %q}
http: {listen: %q}
api: {tokens: ["outage-token"]}
connectors:
  - id: %s
    platform: telegram
    region: eu
    telegram: {token: %q, mode: webhook, webhook_secret: outage-secret, api_url: %q}
  - id: tg-latam
    platform: telegram
    region: latam
    telegram: {token: "6262:LATAM", api_url: "http://127.0.0.1:1"}
`, filepath.Join(dir, "data"), natsURL, httpAddr, connector, token, sim.URL))
	}
	_, js := connectNATS(t, natsURL)
	var updateID atomic.Int64
	updateID.Store(100)
	postBody := func(t *testing.T, connector string, body []byte) httpResult {
		return doHTTP(t, http.MethodPost, base+"/webhooks/"+connector, "", map[string]string{
			"X-Telegram-Bot-Api-Secret-Token": "outage-secret", "Content-Type": "application/json",
		}, bytes.NewReader(body))
	}
	post := func(t *testing.T, connector string, chat int64, msgID int, text string) httpResult {
		return postBody(t, connector, updateJSON(updateID.Add(1), chat, msgID, time.Now().Unix(), text))
	}
	stored := func(t *testing.T, text string) []*evMsg {
		return scanStream(t, js, "PARLEY_EVT_EU", func(m *evMsg) bool { return m.text() == text })
	}
	const chat = 8001

	// An operator's older PARLEY_EVT_EU with a shorter max age and one event.
	{
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PARLEY_EVT_EU", Subjects: []string{"parley.evt.eu.>"}, MaxAge: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "parley.evt.eu.telegram.tg-old.c_OLDOLDOLDOLDOLDOLDOLDOLDO.message", []byte(`{"old":true}`)); err != nil {
			t.Fatal(err)
		}
		cancel()
	}

	p := startProc(t, bin, dir, nil, "serve", "--config", cfg("tg-one"), "--region", "eu")
	waitReadyProc(t, base, p)

	t.Run("§4 streams are created or updated at start, never deleted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "PARLEY_EVT_EU")
		if err != nil {
			t.Fatal(err)
		}
		info := s.CachedInfo()
		if info.Config.MaxAge != 7*24*time.Hour {
			t.Errorf("§4 an existing PARLEY_EVT_EU must be updated at start: max age %s, want 7 days", info.Config.MaxAge)
		}
		if info.State.Msgs < 1 {
			t.Errorf("§4 streams are never deleted: the existing PARLEY_EVT_EU lost its messages")
		}
		for _, name := range []string{"PARLEY_CMD_EU", "PARLEY_DLQ_EU"} {
			if _, err := js.Stream(ctx, name); err != nil {
				t.Errorf("§4 stream %s not created at start: %v", name, err)
			}
		}
	})

	t.Run("§1 serve --region serves only the given regions", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.Stream(ctx, "PARLEY_EVT_LATAM"); err == nil {
			t.Errorf("§1 serve --region eu created the streams of region latam")
		}
		r := doHTTP(t, http.MethodGet, base+"/readyz", "", nil, nil)
		if strings.Contains(string(r.body), "tg-latam") {
			t.Errorf("serve --region eu runs tg-latam: %s", r.body)
		}
	})

	var conv, sender string
	t.Run("§3 webhook stored on an external NATS", func(t *testing.T) {
		if r := post(t, "tg-one", chat, 1, "before the outage"); r.status != http.StatusOK {
			t.Fatalf("webhook: %s", r)
		}
		ev := stored(t, "before the outage")
		if len(ev) != 1 {
			t.Fatalf("stored %d events", len(ev))
		}
		conv, sender = ev[0].E.Subject, ev[0].E.Data.Sender.ID
		if ev[0].Subject != "parley.evt.eu.telegram.tg-one."+conv+".message" {
			t.Errorf("§4 subject %q", ev[0].Subject)
		}
	})
	if conv == "" {
		t.FailNow()
	}

	t.Run("§3 503 while NATS is down, 200 once it is back", func(t *testing.T) {
		stopNATS()
		var r httpResult
		if err := waitCond(20*time.Second, func() bool {
			r = doHTTP(t, http.MethodGet, base+"/readyz", "", nil, nil)
			return r.status == http.StatusServiceUnavailable
		}); err != nil {
			t.Errorf("§3 /readyz must answer 503 when NATS is not reachable; still %s", r)
		} else {
			var body map[string]any
			if json.Unmarshal(r.body, &body) != nil || body["nats"] == nil {
				t.Errorf("§3 /readyz 503 JSON must carry the NATS state: %s", r.body)
			}
		}
		if r := doHTTP(t, http.MethodGet, base+"/healthz", "", nil, nil); r.status != http.StatusOK {
			t.Errorf("§3 /healthz is 200 while the process runs, even without NATS: %s", r)
		}
		start := time.Now()
		refused := updateJSON(updateID.Add(1), chat, 2, time.Now().Unix(), "during the outage")
		r = postBody(t, "tg-one", refused)
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("§3 webhook while NATS is down: %s, want 503 (not durable right now)", r)
		}
		t.Logf("webhook during the outage answered %d after %s", r.status, time.Since(start).Round(time.Millisecond))
		rr := doHTTP(t, http.MethodPost, base+"/v1/replies", "outage-token", map[string]string{"Content-Type": "application/json"},
			strings.NewReader(fmt.Sprintf(`{"id":"outage-1","conversation_id":%q,"text":"x"}`, conv)))
		if rr.status != http.StatusServiceUnavailable {
			t.Errorf("§3 POST /v1/replies while NATS is down: %s, want 503", rr)
		}
		checkErrorShape(t, "POST /v1/replies while NATS is down", rr)

		restartNATS()
		back := time.Now()
		isReady := func() bool {
			r = doHTTP(t, http.MethodGet, base+"/readyz", "", nil, nil)
			return r.status == http.StatusOK
		}
		if err := waitCond(15*time.Second, isReady); err != nil {
			t.Errorf("§3 \"GET /readyz: 200 when NATS is reachable and every enabled connector is running\": NATS is back (the gateway logged \"nats reconnected\") but /readyz still answers %s 15s later", r)
		}
		// The platform retries the refused update.
		if r := postBody(t, "tg-one", refused); r.status != http.StatusOK {
			t.Errorf("the retried webhook after the outage: %s", r)
		}
		if n := len(stored(t, "during the outage")); n != 1 {
			t.Errorf("§6 the update refused with 503 and retried is stored %d times, want 1", n)
		}
		if err := waitCond(10*time.Second, isReady); err != nil {
			t.Fatalf("/readyz not 200 after NATS came back and a webhook was stored: %s\n%s", r, p.output())
		}
		t.Logf("/readyz 200 again %s after NATS came back (once the retried webhook was stored)", time.Since(back).Round(time.Millisecond))
	})

	// A reply that keeps failing transiently when the gateway stops.
	sim.FailChat(chat, telegramsim.InternalServerError(), 1000)
	if r := doHTTP(t, http.MethodPost, base+"/v1/replies", "outage-token", map[string]string{"Content-Type": "application/json"},
		strings.NewReader(fmt.Sprintf(`{"id":"durable-1","conversation_id":%q,"text":"survives a restart"}`, conv))); r.status != http.StatusAccepted {
		t.Fatalf("POST /v1/replies: %s", r)
	}
	if err := waitCond(15*time.Second, func() bool { return sim.Requests("sendMessage") >= 2 }); err != nil {
		t.Fatalf("the failing reply was not tried twice: %v", err)
	}
	// The subject whose settling the restart check waits for: the command
	// is on it now, so its absence later means it was acknowledged.
	durableSubject := "parley.cmd.eu.telegram.tg-one." + conv + ".send"
	{
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := js.Stream(ctx, "PARLEY_CMD_EU")
		if err == nil {
			_, err = s.GetLastMsgForSubject(ctx, durableSubject)
		}
		cancel()
		if err != nil {
			t.Fatalf("the failing reply durable-1 is not stored on %s: %v", durableSubject, err)
		}
	}

	t.Run("§1 SIGTERM exits 0", func(t *testing.T) {
		stopWith(t, p, syscall.SIGTERM, "serve on an external NATS")
	})
	sim.ClearFailures()

	t.Run("§5 ids are stable across a restart and a connector rename", func(t *testing.T) {
		check := func(t *testing.T, connector string, msgID int, text, what string, during func(t *testing.T)) {
			q := startProc(t, bin, dir, nil, "serve", "--config", cfg(connector), "--region", "eu")
			waitReadyProc(t, base, q)
			if during != nil {
				during(t)
			}
			if r := post(t, connector, chat, msgID, text); r.status != http.StatusOK {
				t.Fatalf("webhook: %s", r)
			}
			ev := stored(t, text)
			if len(ev) != 1 {
				t.Fatalf("stored %d events", len(ev))
			}
			e := ev[0].E
			if e.Subject != conv || e.Data.Sender == nil || e.Data.Sender.ID != sender {
				t.Errorf("§5 conversation and sender ids are \"the same on every instance and after restarts\" and \"renaming a connector keeps them\": %s gives %s/%v, before %s/%s",
					what, e.Subject, e.Data.Sender, conv, sender)
			}
			if want := "parley:eu:telegram:" + connector; e.Source != want {
				t.Errorf("§5 source %q, want %q", e.Source, want)
			}
			r := doHTTP(t, http.MethodGet, base+"/v1/conversations/"+conv, "outage-token", nil, nil)
			if r.status != http.StatusOK {
				t.Errorf("GET /v1/conversations after %s: %s", what, r)
			}
			if connector == "tg-two" {
				stopWith(t, q, syscall.SIGINT, "the renamed gateway")
			} else {
				stopWith(t, q, syscall.SIGTERM, "the restarted gateway")
			}
		}
		check(t, "tg-one", 3, "after a restart", "a restart", func(t *testing.T) {
			// §6 transient failures are retried durably: a restart resumes them.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := sim.WaitSentTo(ctx, chat, 1); err != nil {
				t.Errorf("§6 \"transient failures are retried … durably (a restart resumes them)\": %v", err)
				return
			}
			// reply.sent is stored before the command is acknowledged.
			waitCommandsSettled(t, js, "PARLEY_CMD_EU", durableSubject, 30*time.Second)
			if sent := sim.SentTo(chat); len(sent) != 1 || sent[0].Text != "survives a restart" {
				t.Errorf("§6 the retried reply after a restart: %d messages sent", len(sent))
			}
			st := scanStream(t, js, "PARLEY_EVT_EU", func(m *evMsg) bool { return m.replyID() == "durable-1" })
			if len(st) != 1 || st[0].E.Type != "parley.reply.sent" {
				t.Errorf("§5 durable-1 must end in exactly one reply.sent; has %d statuses", len(st))
			}
		})
		check(t, "tg-two", 4, "after a rename", "renaming the connector tg-one → tg-two", nil)
	})
}

// ---------------------------------------------------------------------------
// Several instances on one NATS: one Telegram poller, moved when it dies

// contractScale runs two instances on one NATS with one polling Telegram
// connector, and kills the one that holds the poller.
func contractScale(t *testing.T, bin string) {
	natsURL, _, _ := bustest.StartServer(t)
	const token = "7171:SCALE-SECRET"
	sim, err := telegramsim.NewServer(telegramsim.Options{Token: token, PerChatInterval: telegramsim.Disabled})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	tokenFile := writeFile(t, filepath.Join(dir, "token"), token+"\n")
	_, js := connectNATS(t, natsURL)
	type instance struct {
		name string
		base string
		p    *proc
	}
	start := func(name string) *instance {
		addr := mustFreeAddr(t)
		cfg := writeFile(t, filepath.Join(dir, name+".yaml"), fmt.Sprintf(`data_dir: %q
nats: {url: %q}
http: {listen: %q}
api: {tokens: ["x"]}
connectors:
  - id: tg-poll
    platform: telegram
    region: ap
    telegram:
      token_file: %q
      mode: polling
      poll_timeout: 1s
      api_url: %q
`, filepath.Join(dir, "data-"+name), natsURL, addr, tokenFile, sim.URL))
		in := &instance{name: name, base: "http://" + addr, p: startProc(t, bin, dir, nil, "serve", "--config", cfg)}
		return in
	}
	a, b := start("a"), start("b")
	waitReadyProc(t, a.base, a.p)
	waitReadyProc(t, b.base, b.p)

	stored := func(text string) int {
		return len(scanStream(t, js, "PARLEY_EVT_AP", func(m *evMsg) bool { return m.text() == text }))
	}
	holds := func(in *instance) bool {
		r := doHTTP(t, http.MethodGet, in.base+"/readyz", "", nil, nil)
		var body struct {
			Connectors []struct {
				ID        string `json:"id"`
				LeaseHeld bool   `json:"lease_held"`
			} `json:"connectors"`
		}
		_ = json.Unmarshal(r.body, &body)
		for _, c := range body.Connectors {
			if c.ID == "tg-poll" && c.LeaseHeld {
				return true
			}
		}
		return false
	}

	from := models.User{ID: 9001, FirstName: "Scale"}
	for i := range 5 {
		sim.Enqueue(sim.UserText(9001, from, fmt.Sprintf("scale %d", i)))
	}
	if err := waitCond(20*time.Second, func() bool { return stored("scale 4") == 1 }); err != nil {
		t.Fatalf("polled updates not stored: %v\n%s\n%s", err, a.p.output(), b.p.output())
	}
	for i := range 5 {
		if n := stored(fmt.Sprintf("scale %d", i)); n != 1 {
			t.Errorf("§6 update %d stored %d times with two instances", i, n)
		}
	}
	if n := sim.Responses("getUpdates")[http.StatusConflict]; n != 0 {
		t.Errorf("§6 \"a Telegram poller run[s] on exactly one instance at a time\": the simulator answered %d getUpdates with 409 (two pollers)", n)
	}
	var holder, other *instance
	switch ha, hb := holds(a), holds(b); {
	case ha && !hb:
		holder, other = a, b
	case hb && !ha:
		holder, other = b, a
	default:
		t.Fatalf("§6 exactly one instance must hold the poller's lease: a=%v b=%v", ha, hb)
	}

	// The holder dies: the poller moves to the other instance.
	died := time.Now()
	_ = holder.p.cmd.Process.Signal(syscall.SIGKILL)
	holder.p.wait(10 * time.Second)
	sim.Enqueue(sim.UserText(9001, from, "after the failover"))
	if err := waitCond(45*time.Second, func() bool { return stored("after the failover") == 1 }); err != nil {
		t.Fatalf("§6 connectors that allow one live session \"move to another [instance] when it dies\": not within 45s\n%s", other.p.output())
	}
	t.Logf("the poller moved from %s to %s; the update arrived %s after the kill", holder.name, other.name, time.Since(died).Round(time.Millisecond))
	if !holds(other) {
		t.Errorf("the surviving instance does not report lease_held")
	}
	stopWith(t, other.p, syscall.SIGTERM, "the surviving instance")
}
