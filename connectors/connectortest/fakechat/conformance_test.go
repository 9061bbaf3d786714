package fakechat_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/normalize"
)

// TestConformance runs the whole suite: fakechat is the example every
// webhook connector copies, so it exercises every check but the lease one
// (a webhook connector runs on every instance).
func TestConformance(t *testing.T) {
	connectortest.Run(t, Harness())
}

// Harness is fakechat's conformance harness: two accounts, a customer the
// simulator knows on the first.
func Harness() connectortest.Harness {
	return connectortest.Harness{
		Descriptor: fakechat.Descriptor,
		Setup: func(t *testing.T) *connectortest.Fixture {
			sim, err := fakechatsim.Start(fakechatsim.Options{Accounts: []fakechatsim.Account{
				{ID: "1001", Token: "token-1001"}, {ID: "1002", Token: "token-1002"},
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sim.Close() })
			const account = "1001"
			customer := fakechatsim.User{ID: "u-1", Name: "María López", Username: "maria", Language: "es"}
			sim.AddCustomer(account, customer.ID)
			var seq atomic.Int64
			push := func(t *testing.T, account string, events ...fakechatsim.Event) {
				if _, err := sim.PushAsync(account, events...); err != nil {
					t.Fatalf("pushing: %v", err)
				}
			}
			pushNow := func(ctx context.Context, t *testing.T, events ...fakechatsim.Event) {
				if _, err := sim.Push(ctx, account, events...); err != nil {
					t.Fatalf("pushing: %v", err)
				}
			}
			return &connectortest.Fixture{
				Settings:   connectortest.YAMLSettings(sim.Settings()),
				WebhookURL: sim.Attach,
				Deliver: func(_ context.Context, t *testing.T, n int) {
					for range n {
						push(t, account, sim.Text(customer, fmt.Sprintf("hello %d", seq.Add(1))))
					}
				},
				Redeliver: func(ctx context.Context, t *testing.T) {
					if _, err := sim.Redeliver(ctx); err != nil {
						t.Fatal(err)
					}
				},
				Acked: sim.Acked,
				Address: connectors.Address{
					ConversationID: fakechatsim.ConversationID(account, customer.ID),
					Kind:           normalize.KindDirect,
					PlatformID:     customer.ID,
					Account:        account,
				},
				FailNextSend: func(kind string) {
					switch kind {
					case connectortest.FailRetryAfter:
						sim.FailNext(fakechatsim.KeySend, 1, fakechatsim.RateLimited(3*time.Second))
					case connectortest.FailTransient:
						sim.FailNext(fakechatsim.KeySend, 1, fakechatsim.Unavailable())
					case connectortest.FailPermanent:
						sim.FailNext(fakechatsim.KeySend, 1, fakechatsim.Blocked())
					}
				},
				DeliverPoison: func(_ context.Context, t *testing.T) {
					push(t, account, sim.Text(customer, strings.Repeat("x", connectortest.MaxPayload+1)))
				},
				DeliverUnmappable: func(_ context.Context, t *testing.T) {
					// A message event without its sender.
					push(t, account, fakechatsim.Event{Type: "message", ID: "fm_nobody", TS: 1_700_000_000_000, Text: "who am I"})
				},
				DeliverForged: func(ctx context.Context, t *testing.T, _ string) int {
					out, err := sim.PushForged(ctx, account, sim.Text(customer, "forged"))
					if err != nil && out.Attempts == nil {
						t.Fatal(err)
					}
					return out.Status()
				},
				DeliverMalformed: func(ctx context.Context, t *testing.T, _ string) int {
					out, err := sim.PushMalformed(ctx)
					if err != nil && out.Attempts == nil {
						t.Fatal(err)
					}
					return out.Status()
				},
				Handshake: &connectortest.Handshake{
					Query: func(valid bool) string {
						token := sim.VerifyToken()
						if !valid {
							token = "not-" + token
						}
						return "mode=subscribe&verify_token=" + token + "&challenge=ct-challenge-42"
					},
					Challenge: "ct-challenge-42",
				},
				DeliverAccounts: func(ctx context.Context, t *testing.T, n int) {
					var entries []fakechatsim.Entry
					for i, a := range sim.Accounts()[:n] {
						u := fakechatsim.User{ID: fmt.Sprintf("u-%d-%d", i, seq.Add(1))}
						entries = append(entries, fakechatsim.Entry{Account: a.ID, Events: []fakechatsim.Event{sim.Text(u, "hi")}})
					}
					if _, err := sim.PushBatch(ctx, entries...); err != nil {
						t.Fatal(err)
					}
				},
				DeliverReceipt: func(ctx context.Context, t *testing.T, sent connectors.SentMessage) {
					pushNow(ctx, t, sim.Delivery(customer, sent.PlatformID))
				},
				DeliverEcho: func(ctx context.Context, t *testing.T, sent connectors.SentMessage) {
					pushNow(ctx, t, fakechatsim.Event{Type: "echo", TS: 1_700_000_000_000, ID: sent.PlatformID, To: &customer, Text: "echo"})
				},
				DeliverLateFailure: func(ctx context.Context, t *testing.T, sent connectors.SentMessage) {
					pushNow(ctx, t, sim.Failed(sent.PlatformID, fakechatsim.LateWindowClosed, "the window closed"))
				},
			}
		},
	}
}
