package fakechat

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

// hookEnv is a connector's webhook on an httptest server, with the
// simulator pushing to it.
func hookEnv(t *testing.T, opts fakechatsim.Options) (*env, *fakechatsim.Server, string) {
	t.Helper()
	sim := startSim(t, opts)
	e := newEnv(t, sim.Settings())
	srv := httptest.NewServer(e.c.Webhook())
	t.Cleanup(srv.Close)
	sim.Attach(srv.URL)
	return e, sim, srv.URL
}

func TestWebhookStoresAValidPushAndAnswers200(t *testing.T) {
	e, sim, _ := hookEnv(t, fakechatsim.Options{})
	ev := sim.Text(maria, "Hola")
	out, err := sim.Push(sendCtx(t), "1001", ev)
	if err != nil || out.Status() != http.StatusOK || len(out.Attempts) != 1 {
		t.Fatalf("push: %+v, %v", out, err)
	}
	got := e.pub.stored()
	if len(got) != 1 || got[0].Type != normalize.TypeMessageReceived || got[0].Data.Message.Text != "Hola" || got[0].Data.Account != "1001" {
		t.Fatalf("stored %+v", got)
	}
	if got[0].Subject != fakechatsim.ConversationID("1001", maria.ID) {
		t.Fatal("the simulator and the connector disagree on the conversation id")
	}
	if sim.Acked() != 1 {
		t.Fatalf("Acked() = %d", sim.Acked())
	}
	if s := e.c.InboundStats(); s.Received != 1 || s.Failed != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWebhookRefusesAForgedPush(t *testing.T) {
	e, sim, _ := hookEnv(t, fakechatsim.Options{})
	out, err := sim.PushForged(sendCtx(t), "1001", sim.Text(maria, "I am not fakechat"))
	if !errors.Is(err, simkit.ErrNotAcked) || out.Status() != http.StatusUnauthorized {
		t.Fatalf("push: %+v, %v", out, err)
	}
	if n := len(e.pub.stored()); n != 0 || sim.Acked() != 0 {
		t.Fatalf("%d events stored, %d acked", n, sim.Acked())
	}
}

func TestWebhookRefusesAMissingOrMalformedSignature(t *testing.T) {
	e, sim, url := hookEnv(t, fakechatsim.Options{})
	body, err := sim.Body(fakechatsim.Entry{Account: "1001", Events: []fakechatsim.Event{sim.Text(maria, "hi")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []string{"", "sha1=abc", "sha256=zz", "sha256=" + strings.Repeat("0", 64)} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
		if sig != "" {
			req.Header.Set(SignatureHeader, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("signature %q: status %d, want 401", sig, resp.StatusCode)
		}
	}
	if len(e.pub.stored()) != 0 {
		t.Fatal("an unsigned push was stored")
	}
}

func TestWebhookRefusesAMalformedBody(t *testing.T) {
	e, sim, _ := hookEnv(t, fakechatsim.Options{})
	out, err := sim.PushMalformed(sendCtx(t))
	if !errors.Is(err, simkit.ErrNotAcked) || out.Status() != http.StatusBadRequest {
		t.Fatalf("push: %+v, %v", out, err)
	}
	if len(e.pub.stored()) != 0 {
		t.Fatal("a malformed body stored events")
	}
	if s := e.c.InboundStats(); s.Failed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// While storage is down the webhook answers 503; fakechat's retry then
// stores the event once.
func TestWebhookAnswers503UntilStorageIsBackAndTheRetryStoresOnce(t *testing.T) {
	retries := slices.Repeat([]time.Duration{20 * time.Millisecond}, 200)
	e, sim, _ := hookEnv(t, fakechatsim.Options{Retries: retries})
	e.pub.setDown(true)
	d, err := sim.PushAsync("1001", sim.Text(maria, "are you there?"))
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "a 503 answer", func() bool {
		return slices.ContainsFunc(sim.Attempts(), func(a simkit.Attempt) bool { return a.Status == http.StatusServiceUnavailable })
	})
	if got := e.c.Health().State; got != normalize.StateDegraded {
		t.Fatalf("health %s while storage is down, want degraded", got)
	}
	e.pub.setDown(false)
	out, err := d.Wait(sendCtx(t))
	if err != nil || !out.Acked {
		t.Fatalf("push: %+v, %v", out, err)
	}
	if n := len(e.pub.stored()); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
	// A redelivery of the same body stores nothing new.
	if _, err := sim.Redeliver(sendCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(e.pub.stored()); n != 1 {
		t.Fatalf("%d events after a redelivery, want 1", n)
	}
	if e.c.Health().State == normalize.StateDegraded {
		t.Fatal("still degraded after storing")
	}
}

func TestWebhookStoresABatchAndDeadLettersAnUnknownAccount(t *testing.T) {
	e, sim, _ := hookEnv(t, fakechatsim.Options{})
	out, err := sim.PushBatch(sendCtx(t),
		fakechatsim.Entry{Account: "1001", Events: []fakechatsim.Event{sim.Text(maria, "one"), sim.Text(jon, "two")}},
		fakechatsim.Entry{Account: "9999", Events: []fakechatsim.Event{sim.Text(maria, "lost?")}},
		fakechatsim.Entry{Account: "1002", Events: []fakechatsim.Event{sim.Text(maria, "three"), {Type: "typing_on"}}},
	)
	if err != nil || out.Status() != http.StatusOK {
		t.Fatalf("push: %+v, %v", out, err)
	}
	var texts []string
	for _, ev := range e.pub.stored() {
		texts = append(texts, ev.Data.Account+":"+ev.Data.Message.Text)
	}
	if want := []string{"1001:one", "1001:two", "1002:three"}; !slices.Equal(texts, want) {
		t.Fatalf("stored %v, want %v", texts, want)
	}
	rej := e.rejects.all()
	if len(rej) != 1 || rej[0].Reason != connectors.RejectUnmappable || !bytes.Contains(rej[0].Raw, []byte(`"account":"9999"`)) {
		t.Fatalf("rejected %+v", rej)
	}
	if s := e.c.InboundStats(); s.Received != 5 || s.Ignored != 1 || s.Failed != 1 || s.DeadLettered != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWebhookHandshake(t *testing.T) {
	_, sim, url := hookEnv(t, fakechatsim.Options{})
	status, body, err := sim.Handshake(sendCtx(t), sim.VerifyToken(), "challenge-1234")
	if err != nil || status != http.StatusOK || body != "challenge-1234" {
		t.Fatalf("handshake: %d %q %v", status, body, err)
	}
	if status, _, _ := sim.Handshake(sendCtx(t), "wrong", "c"); status != http.StatusForbidden {
		t.Fatalf("a wrong token: %d, want 403", status)
	}
	resp, err := http.Get(url + "?mode=unsubscribe&verify_token=" + sim.VerifyToken() + "&challenge=c")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a wrong mode: %d, want 403", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q", ct)
	}
}

func TestWebhookRefusesOtherMethodsAndBigBodies(t *testing.T) {
	_, _, url := hookEnv(t, fakechatsim.Options{})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	resp, err = http.Post(url, "application/json", bytes.NewReader(make([]byte, 2<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a 2 MB body: %d", resp.StatusCode)
	}
}

// sentBy records that Parley sent m through the ledger, as the outbox does.
func sentBy(e *env, m fakechatsim.SentMessage, reply string, part int) connectors.SentMessage {
	s := connectors.SentMessage{PlatformID: m.ID, ReplyID: reply, Part: part, ConversationID: fakechatsim.ConversationID(m.Account, m.To), SentAt: m.At}
	e.ledger.add(s)
	return s
}

// TestWebhookResolvesFromTheLedger sends through the simulator, records the
// sends in the ledger as the outbox would, and has fakechat report on them.
func TestWebhookResolvesFromTheLedger(t *testing.T) {
	e, sim, _ := hookEnv(t, fakechatsim.Options{})
	if _, err := sim.Push(sendCtx(t), "1001", sim.Text(maria, "hi")); err != nil {
		t.Fatal(err)
	}
	to := connectors.Address{Account: "1001", PlatformID: maria.ID}
	for _, text := range []string{"part one", "part two", "another reply"} {
		if _, err := e.c.SendPart(sendCtx(t), to, outMessage{Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	sent := sim.Sent("1001", maria.ID)
	sentBy(e, sent[0], "rep-1", 0)
	sentBy(e, sent[1], "rep-1", 1)
	sentBy(e, sent[2], "rep-2", 0)
	push := func(ev fakechatsim.Event) *normalize.Event {
		t.Helper()
		before := len(e.pub.stored())
		if _, err := sim.Push(sendCtx(t), "1001", ev); err != nil {
			t.Fatal(err)
		}
		got := e.pub.stored()
		if len(got) == before {
			return nil
		}
		return got[len(got)-1]
	}

	t.Run("a delivery receipt names the replies of its ids", func(t *testing.T) {
		ev := push(sim.Delivery(maria, sent[1].ID, sent[0].ID, "fm_out_unknown"))
		if ev == nil || ev.Type != normalize.TypeReceiptDelivered || !slices.Equal(ev.Data.Receipt.ReplyIDs, []string{"rep-1"}) {
			t.Fatalf("event %+v", ev)
		}
		if len(ev.Data.Receipt.PlatformIDs) != 3 {
			t.Fatalf("platform ids %v", ev.Data.Receipt.PlatformIDs)
		}
	})
	t.Run("a read receipt names the replies up to its watermark", func(t *testing.T) {
		ev := push(sim.Read(maria, sent[2].At))
		if ev == nil || ev.Type != normalize.TypeReceiptRead || !slices.Equal(ev.Data.Receipt.ReplyIDs, []string{"rep-1", "rep-2"}) {
			t.Fatalf("event %+v", ev.Data.Receipt)
		}
	})
	t.Run("the echo of Parley's own send is not published", func(t *testing.T) {
		if ev := push(sim.EchoOf(sent[0])); ev != nil {
			t.Fatalf("published %+v", ev)
		}
	})
	t.Run("an echo of a message sent outside Parley is published", func(t *testing.T) {
		ev := push(sim.Echo(maria, "from the fakechat inbox"))
		if ev == nil || ev.Type != normalize.TypeMessageEcho || !ev.Data.Sender.IsBusiness || ev.Subject != fakechatsim.ConversationID("1001", maria.ID) {
			t.Fatalf("event %+v", ev)
		}
	})
	t.Run("a failed status is one late failure, even when redelivered", func(t *testing.T) {
		if ev := push(sim.Failed(sent[2].ID, fakechatsim.LateBlocked, "undeliverable")); ev != nil {
			t.Fatalf("published %+v", ev)
		}
		if _, err := sim.Redeliver(sendCtx(t)); err != nil {
			t.Fatal(err)
		}
		late := e.ledger.lateReports()
		if len(late) != 1 || late[0].m.ReplyID != "rep-2" || late[0].failure.Code != normalize.ErrRecipientUnavailable || late[0].failure.PlatformCode != "131026" {
			t.Fatalf("late failures %+v", late)
		}
	})
	t.Run("a failed status of a message Parley did not send is ignored", func(t *testing.T) {
		push(sim.Failed("fm_out_elsewhere", fakechatsim.LateWindowClosed, ""))
		if n := len(e.ledger.lateReports()); n != 1 {
			t.Fatalf("%d late failures", n)
		}
	})
	t.Run("a ledger outage answers 503 and stores nothing", func(t *testing.T) {
		e.ledger.mu.Lock()
		e.ledger.err = errors.New("kv: timeout")
		e.ledger.mu.Unlock()
		defer func() {
			e.ledger.mu.Lock()
			e.ledger.err = nil
			e.ledger.mu.Unlock()
		}()
		before := len(e.pub.stored())
		out, err := sim.Push(sendCtx(t), "1001", sim.Delivery(maria, sent[0].ID), sim.Text(maria, "held back"))
		if !errors.Is(err, simkit.ErrNotAcked) || out.Status() != http.StatusServiceUnavailable {
			t.Fatalf("push: %+v, %v", out, err)
		}
		if len(e.pub.stored()) != before {
			t.Fatal("stored during a ledger outage")
		}
	})
}
