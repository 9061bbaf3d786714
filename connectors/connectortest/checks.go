package connectortest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/ingest"
	"github.com/parley-gateway/parley/normalize"
)

// leaseTTL is the lease the lease-loss check holds: short, so that a
// stolen lease is noticed within a second.
const leaseTTL = 1500 * time.Millisecond

// planReplies are replies every connector must plan the same way twice.
func planReplies(conv normalize.ConversationID) []*normalize.Reply {
	long := strings.Repeat("A sentence of a long answer, with **bold** words. ", 400)
	return []*normalize.Reply{
		{ID: "plan-text", ConversationID: conv, Text: "Your order **#8812** ships _today_."},
		{ID: "plan-long", ConversationID: conv, Text: long},
		{ID: "plan-choices", ConversationID: conv, Text: "Anything else?",
			Choices: []normalize.Choice{{ID: "yes", Title: "Yes"}, {ID: "no", Title: "No"}}},
		{ID: "plan-file", ConversationID: conv, Text: "Here it is.",
			Attachments: []normalize.ReplyAttachment{{URL: "https://files.example/invoice.pdf", Filename: "invoice.pdf", Caption: "Invoice"}}},
	}
}

func testPlanDeterministic(t *testing.T, h Harness) {
	s := start(t, h)
	for _, r := range planReplies(s.fx.Address.ConversationID) {
		first, err1 := s.conn.Plan(r, s.fx.Address, connectors.Admission{})
		second, err2 := s.conn.Plan(r, s.fx.Address, connectors.Admission{})
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Errorf("Plan(%s) failed differently twice: %v, then %v", r.ID, err1, err2)
			continue
		}
		if err1 != nil {
			if ce := connectors.Classify(err1); ce.Class != connectors.ClassPermanent {
				t.Errorf("Plan(%s) failed with a %s error; a plan error is permanent: %v", r.ID, ce.Class, err1)
			}
			continue
		}
		if len(first) == 0 {
			t.Errorf("Plan(%s) returned no parts and no error", r.ID)
		}
		if !reflect.DeepEqual(first, second) {
			t.Errorf("Plan(%s) returned different parts for the same reply:\n%#v\n%#v", r.ID, first, second)
		}
	}
}

func testLeaseLost(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	ex, ok := s.conn.(connectors.Exclusive)
	if !ok || !ex.Exclusive() {
		t.Skip("not Exclusive: Run runs on every instance")
	}
	key := bus.LeaseKey("connector", connectorID(h))
	held := make(chan struct{}, 1)
	ran := make(chan time.Time, 1)
	done := make(chan error, 1)
	lctx, stop := context.WithCancel(ctx)
	t.Cleanup(func() {
		// After Run, RunWithLease waits to take the lease again: stop it.
		stop()
		<-done
	})
	go func() {
		done <- bus.RunWithLease(lctx, s.env.Region.Leases, key, "ct-holder", leaseTTL, func(rctx context.Context) error {
			select {
			case held <- struct{}{}:
			default:
			}
			err := s.conn.Run(rctx)
			select {
			case ran <- time.Now():
			default:
			}
			return err
		}, nil)
	}()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the lease was never acquired")
	}
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)

	// Another holder takes the key: the next renewal fails.
	stolen := time.Now()
	if _, err := s.env.Region.Leases.Put(ctx, key, []byte("ct-thief")); err != nil {
		t.Fatalf("stealing the lease: %v", err)
	}
	select {
	case at := <-ran:
		if took := at.Sub(stolen); took > leaseTTL+cancelWithin {
			t.Errorf("Run returned %s after the lease was lost, want within %s", took, leaseTTL+cancelWithin)
		}
	case <-time.After(leaseTTL + cancelWithin):
		t.Fatalf("Run still running %s after its lease was lost", leaseTTL+cancelWithin)
	}
}

// ackedAfter waits until the platform counts one more acknowledged
// delivery than before.
func ackedAfter(ctx context.Context, t *testing.T, fx *Fixture, before int, what string) {
	t.Helper()
	WaitFor(ctx, t, what+" is acknowledged to the platform", func() bool { return fx.Acked() > before })
}

func testPoison(t *testing.T, h Harness) {
	checkRejected(t, h, "poison", func(fx *Fixture) func(context.Context, *testing.T) { return fx.DeliverPoison },
		connectors.RejectRefused)
}

func testUnmappable(t *testing.T, h Harness) {
	checkRejected(t, h, "unmappable", func(fx *Fixture) func(context.Context, *testing.T) { return fx.DeliverUnmappable },
		connectors.RejectUnmappable)
}

// checkRejected delivers a bad update, then a good one, and checks that the
// bad one is acknowledged and dead-lettered with reason, and the good one
// stored after it: the connector moved on.
func checkRejected(t *testing.T, h Harness, what string, hook func(*Fixture) func(context.Context, *testing.T), reason string) {
	ctx := subtestContext(t)
	s := start(t, h)
	deliver := hook(s.fx)
	if deliver == nil {
		t.Skip("the fixture has no " + what + " update")
	}
	startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	before := s.fx.Acked()
	deliver(ctx, t)
	ackedAfter(ctx, t, s.fx, before, "the "+what+" update")
	s.fx.Deliver(ctx, t, 1)
	s.env.WaitEvents(ctx, t, 1)
	if n, _ := s.env.EventCount(ctx); n != 1 {
		t.Errorf("%d events stored, want only the good update's", n)
	}
	dead, err := s.env.InboundDeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 {
		t.Fatalf("%d inbound dead letters, want 1", len(dead))
	}
	if got := dead[0].Header.Get(ingest.HeaderRejectReason); got != reason {
		t.Errorf("dead letter reason %q, want %q", got, reason)
	}
	if len(dead[0].Data) == 0 {
		t.Error("the dead letter keeps none of the update's bytes")
	}
	if ic, ok := s.conn.(connectors.InboundCounter); ok {
		if st := ic.InboundStats(); st.DeadLettered != 1 {
			t.Errorf("InboundStats().DeadLettered = %d, want 1", st.DeadLettered)
		}
	}
	if got := s.conn.Health().State; got != normalize.StateRunning {
		t.Errorf("health %s after a %s update, want running: one bad update is not an outage", got, what)
	}
}

func testForged(t *testing.T, h Harness) {
	checkRefusedRequest(t, h, "forged", func(fx *Fixture) refusedHook { return fx.DeliverForged }, http.StatusUnauthorized)
}

func testMalformed(t *testing.T, h Harness) {
	checkRefusedRequest(t, h, "malformed", func(fx *Fixture) refusedHook { return fx.DeliverMalformed }, http.StatusBadRequest)
}

// refusedHook sends one webhook request the connector must refuse.
type refusedHook func(ctx context.Context, t *testing.T, webhookURL string) int

// checkRefusedRequest delivers a request the connector must answer with
// want, and checks that nothing was stored. It skips for a transport
// without webhooks (the fixture has no hook).
func checkRefusedRequest(t *testing.T, h Harness, what string, hook func(*Fixture) refusedHook, want int) {
	ctx := subtestContext(t)
	s := start(t, h)
	deliver := hook(s.fx)
	if _, ok := s.conn.(connectors.WebhookConnector); !ok || deliver == nil {
		t.Skip("the fixture's transport takes no webhooks")
	}
	startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	if got := deliver(ctx, t, s.webhookURL); got != want {
		t.Errorf("a %s request answered %d, want %d", what, got, want)
	}
	assertNothingStored(ctx, t, s)
}

// assertNothingStored checks that no event and no dead letter was stored;
// the request was answered, so anything stored would be there already.
func assertNothingStored(ctx context.Context, t *testing.T, s *setup) {
	t.Helper()
	if n, err := s.env.EventCount(ctx); err != nil || n != 0 {
		t.Errorf("%d events stored (err %v), want none", n, err)
	}
	if dead, err := s.env.InboundDeadLetters(ctx); err != nil || len(dead) != 0 {
		t.Errorf("%d inbound dead letters (err %v), want none", len(dead), err)
	}
}

func testHandshake(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	if s.fx.Handshake == nil {
		t.Skip("the platform has no GET handshake")
	}
	for _, valid := range []bool{true, false} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.webhookURL+"?"+s.fx.Handshake.Query(valid), nil)
		resp, err := s.env.Deps.HTTPClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case valid && (resp.StatusCode != http.StatusOK || string(body) != s.fx.Handshake.Challenge):
			t.Errorf("a valid handshake answered %d %q, want 200 %q", resp.StatusCode, body, s.fx.Handshake.Challenge)
		case !valid && resp.StatusCode != http.StatusForbidden:
			t.Errorf("a handshake with a wrong verify token answered %d, want 403", resp.StatusCode)
		case !valid && strings.Contains(string(body), s.fx.Handshake.Challenge):
			t.Errorf("a handshake with a wrong verify token echoed the challenge")
		}
	}
}

func testAccounts(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	if s.fx.DeliverAccounts == nil {
		t.Skip("the connector serves one account")
	}
	startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	const n = 2
	s.fx.DeliverAccounts(ctx, t, n)
	evs := s.env.WaitEvents(ctx, t, n)
	accounts := map[string]bool{}
	for _, ev := range evs {
		e, _, err := s.env.Directory.Get(ctx, ev.Subject)
		if err != nil {
			t.Fatalf("conversation %s: %v", ev.Subject, err)
		}
		if e.Account == "" {
			t.Errorf("conversation %s records no account", ev.Subject)
		}
		accounts[e.Account] = true
	}
	if len(accounts) != n {
		t.Errorf("the %d events belong to %d accounts, want %d", len(evs), len(accounts), n)
	}
}

// sendRecorded sends one part to the fixture's address and records it in
// the ledger as the outbox would.
func sendRecorded(ctx context.Context, t *testing.T, s *setup, replyID string) connectors.SentMessage {
	t.Helper()
	parts, err := s.conn.Plan(&normalize.Reply{ID: replyID, ConversationID: s.fx.Address.ConversationID, Text: "sent by parley"},
		s.fx.Address, connectors.Admission{})
	if err != nil || len(parts) == 0 {
		t.Fatalf("Plan: %d parts, %v", len(parts), err)
	}
	sent, err := s.conn.SendPart(ctx, s.fx.Address, parts[0])
	if err != nil {
		t.Fatalf("SendPart: %v", err)
	}
	m := connectors.SentMessage{PlatformID: sent.PlatformID, ReplyID: replyID, Part: 0,
		ConversationID: s.fx.Address.ConversationID, SentAt: time.Now().UTC().Add(-time.Second)}
	s.env.RecordSent(t, m)
	return m
}

func testReceipt(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	if s.fx.DeliverReceipt == nil {
		t.Skip("the platform reports no receipts")
	}
	startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	m := sendRecorded(ctx, t, s, "ct-receipt")
	s.fx.DeliverReceipt(ctx, t, m)
	evs := s.env.WaitEvents(ctx, t, 1)
	if evs[0].Data.Receipt == nil {
		t.Fatalf("stored %s, want a receipt", evs[0].Type)
	}
	if got := evs[0].Data.Receipt.ReplyIDs; !slices.Equal(got, []string{"ct-receipt"}) {
		t.Errorf("receipt reply_ids = %v, want [ct-receipt]", got)
	}
}

func testEcho(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	if s.fx.DeliverEcho == nil {
		t.Skip("the platform sends no echoes")
	}
	startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	m := sendRecorded(ctx, t, s, "ct-echo")
	before := s.fx.Acked()
	s.fx.DeliverEcho(ctx, t, m)
	ackedAfter(ctx, t, s.fx, before, "the echo")
	assertNothingStored(ctx, t, s)

	// An echo of a message Parley did not send is the business writing
	// from elsewhere: it is published.
	other := connectors.SentMessage{PlatformID: m.PlatformID + "-elsewhere", ReplyID: "", ConversationID: m.ConversationID, SentAt: m.SentAt}
	s.fx.DeliverEcho(ctx, t, other)
	evs := s.env.WaitEvents(ctx, t, 1)
	if evs[0].Type != normalize.TypeMessageEcho {
		t.Errorf("an echo of a message sent outside Parley stored %s, want %s", evs[0].Type, normalize.TypeMessageEcho)
	}
}

func testLateFailure(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	if s.fx.DeliverLateFailure == nil {
		t.Skip("the platform reports no failures after a send succeeded")
	}
	startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	m := sendRecorded(ctx, t, s, "ct-late")
	for i := range 2 {
		before := s.fx.Acked()
		s.fx.DeliverLateFailure(ctx, t, m)
		ackedAfter(ctx, t, s.fx, before, fmt.Sprintf("late failure report %d", i+1))
	}
	evs, err := s.env.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var late []*normalize.Event
	for _, ev := range evs {
		if ev.Type == normalize.TypeReplyFailed {
			late = append(late, ev)
		}
	}
	if len(late) != 1 {
		t.Fatalf("%d reply.failed events after two reports, want exactly 1 (all events: %d)", len(late), len(evs))
	}
	r := late[0].Data.Reply
	if r == nil || r.ID != "ct-late" || !r.Late || r.Error == nil || r.Error.Code == "" {
		t.Errorf("late failure = %+v, want reply ct-late, late, with an error code", r)
	}
	if late[0].Subject != m.ConversationID {
		t.Errorf("late failure on conversation %s, want %s", late[0].Subject, m.ConversationID)
	}
}
