package fakechat

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/normalize"
)

// planned is a part as the test reads it.
func planned(t *testing.T, parts []connectors.Part) []outMessage {
	t.Helper()
	var out []outMessage
	for _, p := range parts {
		m, ok := p.(outMessage)
		if !ok {
			t.Fatalf("part of type %T", p)
		}
		out = append(out, m)
	}
	return out
}

func planFor(t *testing.T, reply *normalize.Reply, adm connectors.Admission) ([]outMessage, error) {
	t.Helper()
	e := newEnv(t, validSettings)
	parts, err := e.c.Plan(reply, connectors.Address{Account: "1001", PlatformID: "cust_412"}, adm)
	if err != nil {
		return nil, err
	}
	return planned(t, parts), nil
}

func choices(n int) []normalize.Choice {
	var out []normalize.Choice
	for i := range n {
		out = append(out, normalize.Choice{ID: "c" + string(rune('a'+i)), Title: "Choice " + string(rune('A'+i))})
	}
	return out
}

func TestPlan(t *testing.T) {
	long := strings.Repeat("All work and no play makes a dull reply. ", 60) // 2460 characters
	tests := []struct {
		name  string
		reply normalize.Reply
		adm   connectors.Admission
		check func(t *testing.T, parts []outMessage)
	}{
		{
			name:  "markdown becomes plain text",
			reply: normalize.Reply{Text: "Your order **#8812** ships _today_, see [tracking](https://t.example/1)."},
			check: func(t *testing.T, parts []outMessage) {
				if len(parts) != 1 || strings.Contains(parts[0].Text, "**") || !strings.Contains(parts[0].Text, "#8812") {
					t.Fatalf("parts %+v", parts)
				}
			},
		},
		{
			name:  "long text is split at 2000 characters",
			reply: normalize.Reply{Text: long},
			check: func(t *testing.T, parts []outMessage) {
				if len(parts) != 2 {
					t.Fatalf("%d parts", len(parts))
				}
				for _, p := range parts {
					if n := len([]rune(p.Text)); n > maxTextRunes || n == 0 {
						t.Fatalf("a part of %d characters", n)
					}
					if strings.HasPrefix(p.Text, " ") || strings.HasSuffix(p.Text, " ") {
						t.Fatalf("a part not cut at a boundary: %q", p.Text)
					}
				}
			},
		},
		{
			name: "attachments follow the text, choices ride on the last text, reply_to on the first",
			reply: normalize.Reply{
				Text:        long,
				ReplyTo:     "fm_in_3",
				Choices:     choices(2),
				Attachments: []normalize.ReplyAttachment{{URL: "https://files.example/a.pdf", Caption: "the *invoice*"}, {URL: "https://files.example/b.png"}},
			},
			check: func(t *testing.T, parts []outMessage) {
				if len(parts) != 4 {
					t.Fatalf("%d parts: %+v", len(parts), parts)
				}
				if parts[0].ReplyTo != "fm_in_3" || parts[1].ReplyTo != "" || parts[3].ReplyTo != "" {
					t.Error("reply_to is not on the first part only")
				}
				if len(parts[1].Choices) != 2 || len(parts[0].Choices) != 0 || len(parts[3].Choices) != 0 {
					t.Error("choices are not on the last text message")
				}
				if parts[2].Attachment == nil || parts[2].Attachment.URL != "https://files.example/a.pdf" || parts[2].Text != "the invoice" {
					t.Errorf("first attachment part %+v", parts[2])
				}
				if parts[3].Attachment == nil || parts[3].Text != "" {
					t.Errorf("second attachment part %+v", parts[3])
				}
			},
		},
		{
			name:  "without text, choices ride on the last part",
			reply: normalize.Reply{Attachments: []normalize.ReplyAttachment{{URL: "https://files.example/a.png"}, {URL: "https://files.example/b.png"}}, Choices: choices(1)},
			check: func(t *testing.T, parts []outMessage) {
				if len(parts) != 2 || len(parts[1].Choices) != 1 || len(parts[0].Choices) != 0 {
					t.Fatalf("parts %+v", parts)
				}
			},
		},
		{
			name:  "a long caption goes on as text messages",
			reply: normalize.Reply{Attachments: []normalize.ReplyAttachment{{URL: "https://files.example/a.png", Caption: long}}},
			check: func(t *testing.T, parts []outMessage) {
				if len(parts) != 2 || parts[0].Attachment == nil || parts[1].Attachment != nil || parts[1].Text == "" {
					t.Fatalf("parts %+v", parts)
				}
			},
		},
		{
			name:  "the tag goes on every part",
			reply: normalize.Reply{Text: long, HumanAgent: true},
			adm:   connectors.Admission{Tag: humanAgentTag},
			check: func(t *testing.T, parts []outMessage) {
				for i, p := range parts {
					if p.Tag != humanAgentTag {
						t.Fatalf("part %d tag %q", i, p.Tag)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := planFor(t, &tt.reply, tt.adm)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, parts)
			again, _ := planFor(t, &tt.reply, tt.adm)
			a, _ := json.Marshal(parts)
			b, _ := json.Marshal(again)
			if string(a) != string(b) {
				t.Fatal("Plan is not deterministic")
			}
		})
	}
}

func TestPlanRefuses(t *testing.T) {
	longTitle := normalize.Choice{ID: "x", Title: "a title of over twenty characters"}
	longID := normalize.Choice{ID: strings.Repeat("i", 101), Title: "ok"}
	tests := []struct {
		name  string
		reply *normalize.Reply
		code  normalize.ErrorCode
	}{
		{"no reply", nil, normalize.ErrInvalidReply},
		{"nothing to send", &normalize.Reply{Text: "  "}, normalize.ErrInvalidReply},
		{"eleven choices", &normalize.Reply{Text: "pick", Choices: choices(11)}, normalize.ErrInvalidReply},
		{"a choice title over 20 characters", &normalize.Reply{Text: "pick", Choices: []normalize.Choice{longTitle}}, normalize.ErrInvalidReply},
		{"a choice id over 100 bytes", &normalize.Reply{Text: "pick", Choices: []normalize.Choice{longID}}, normalize.ErrInvalidReply},
		{"a stored file", &normalize.Reply{Attachments: []normalize.ReplyAttachment{{MediaID: "m_abc"}}}, normalize.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := planFor(t, tt.reply, connectors.Admission{})
			e := connectors.Classify(err)
			if err == nil || e.Class != connectors.ClassPermanent || e.Code != tt.code {
				t.Fatalf("err = %v, want permanent %s", err, tt.code)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	e := newEnv(t, validSettings+"limits: {burst: 3}\n")
	p := e.c.Policy(connectors.Address{Account: "1002", Kind: normalize.KindDirect})
	if p.Limits.Account != "1002" || p.Limits.PerAccount != 50 || p.Limits.Burst != 3 {
		t.Fatalf("limits %+v: want account 1002's own bucket of 50/s, burst 3", p.Limits)
	}
	last := testNow.Add(-48 * time.Hour)
	if got := p.Window.Expires(last); !got.Equal(last.Add(24 * time.Hour)) {
		t.Fatalf("window expires %s", got)
	}
	adm, err := p.Window.Admit(&normalize.Reply{HumanAgent: true}, last, testNow)
	if err != nil || adm.Tag != humanAgentTag {
		t.Fatalf("a human agent's reply after 2 days: %+v, %v", adm, err)
	}
	if _, err := p.Window.Admit(&normalize.Reply{}, last, testNow); connectors.Classify(err).Code != normalize.ErrWindowClosed {
		t.Fatalf("a reply after 2 days: %v", err)
	}
}

// sendEnv is a connector pointed at a simulator.
func sendEnv(t *testing.T, opts fakechatsim.Options) (*env, *fakechatsim.Server) {
	t.Helper()
	sim := startSim(t, opts)
	e := newEnv(t, sim.Settings())
	return e, sim
}

func sendCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSendPartDeliversWhatPlanRendered(t *testing.T) {
	e, sim := sendEnv(t, fakechatsim.Options{})
	sim.AddCustomer("1002", maria.ID)
	to := connectors.Address{Account: "1002", PlatformID: maria.ID}
	reply := &normalize.Reply{Text: "Pick **one**", ReplyTo: "fm_in_3", Choices: []normalize.Choice{{ID: "yes", Title: "Yes"}, {ID: "no", Title: "No"}},
		Attachments: []normalize.ReplyAttachment{{URL: "https://files.example/a.png"}}}
	parts, err := e.c.Plan(reply, to, connectors.Admission{Tag: humanAgentTag})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range parts {
		sent, err := e.c.SendPart(sendCtx(t), to, p)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sent.PlatformID)
	}
	got := sim.Sent("1002", maria.ID)
	if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[1] {
		t.Fatalf("the simulator has %+v, the connector got ids %v", got, ids)
	}
	first, second := got[0], got[1]
	if first.Text != "Pick one" || first.ReplyTo != "fm_in_3" || len(first.Choices) != 2 || first.Choices[1] != (fakechatsim.Choice{ID: "no", Title: "No"}) || first.Tag != humanAgentTag {
		t.Errorf("first message %+v", first)
	}
	if second.AttachmentURL != "https://files.example/a.png" || second.ReplyTo != "" || second.Tag != humanAgentTag {
		t.Errorf("second message %+v", second)
	}
	reqs := sim.Requests().Filter(simkit.Match("POST", "/v1/1002/messages"))
	if len(reqs) != 2 || reqs[0].Header.Get("Authorization") != "Bearer token-1002" {
		t.Fatalf("requests %+v", reqs)
	}
}

// TestSendPartClassifiesTheSimulatorsAnswers is one row per documented
// failure, each the simulator's real answer.
func TestSendPartClassifiesTheSimulatorsAnswers(t *testing.T) {
	tests := []struct {
		name         string
		prepare      func(sim *fakechatsim.Server, e *env)
		to           connectors.Address
		part         outMessage
		class        connectors.Class
		code         normalize.ErrorCode
		platformCode string
		retryAfter   time.Duration
		reached      bool // the simulator received the request
		warmup       bool // send once first, to spend the rate budget
	}{
		{
			name: "over the account's rate limit",
			prepare: func(sim *fakechatsim.Server, _ *env) {
				sim.SetRateLimit(simkit.Limit{Interval: time.Hour})
				sim.AddCustomer("1001", "warmup")
			},
			class: connectors.ClassRetryAfter, code: normalize.ErrRateLimited, platformCode: "429/rate_limited", retryAfter: time.Hour, reached: true, warmup: true,
		},
		{
			name:    "a blocked customer",
			prepare: func(sim *fakechatsim.Server, _ *env) { sim.Block(maria.ID) },
			class:   connectors.ClassPermanent, code: normalize.ErrRecipientUnavailable, platformCode: "403/blocked", reached: true,
		},
		{
			name:  "a customer who never wrote",
			to:    connectors.Address{Account: "1001", PlatformID: "cust_stranger"},
			class: connectors.ClassPermanent, code: normalize.ErrUnknownConversation, platformCode: "404/no_user", reached: true,
		},
		{
			name:  "a message over fakechat's limits",
			part:  outMessage{Text: strings.Repeat("x", 2001)},
			class: connectors.ClassPermanent, code: normalize.ErrInvalidReply, platformCode: "400/invalid", reached: true,
		},
		{
			name: "outside the window",
			prepare: func(sim *fakechatsim.Server, _ *env) {
				sim.FailNext(fakechatsim.KeySend, 1, fakechatsim.WindowClosed())
			},
			class: connectors.ClassPermanent, code: normalize.ErrWindowClosed, platformCode: "400/window", reached: true,
		},
		{
			name:    "a 503",
			prepare: func(sim *fakechatsim.Server, _ *env) { sim.FailNext(fakechatsim.KeySend, 1, fakechatsim.Unavailable()) },
			class:   connectors.ClassTransient, code: normalize.ErrPlatformError, platformCode: "503/unavailable", reached: true,
		},
		{
			name: "a proxy's 502",
			prepare: func(sim *fakechatsim.Server, _ *env) {
				sim.FailNext(fakechatsim.KeySend, 1, fakechatsim.BadGatewayHTML())
			},
			class: connectors.ClassTransient, code: normalize.ErrPlatformError, platformCode: "502", reached: true,
		},
		{
			name:    "a dropped connection",
			prepare: func(sim *fakechatsim.Server, _ *env) { sim.FailNext(fakechatsim.KeySend, 1, simkit.Drop()) },
			class:   connectors.ClassTransient, code: normalize.ErrPlatformError, reached: true,
		},
		{
			name: "a revoked token",
			prepare: func(_ *fakechatsim.Server, e *env) {
				e.c.cfg.tokens["1001"] = "revoked"
			},
			class: connectors.ClassPermanent, code: normalize.ErrUnauthorized, platformCode: "401/unauthorized", reached: true,
		},
		{
			name:  "an account not in the settings",
			to:    connectors.Address{Account: "4242", PlatformID: maria.ID},
			class: connectors.ClassPermanent, code: normalize.ErrUnknownConversation,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, sim := sendEnv(t, fakechatsim.Options{RateLimit: &simkit.Limit{}})
			sim.AddCustomer("1001", maria.ID)
			to := tt.to
			if to == (connectors.Address{}) {
				to = connectors.Address{Account: "1001", PlatformID: maria.ID}
			}
			part := tt.part
			if part.Text == "" {
				part.Text = "hello"
			}
			if tt.prepare != nil {
				tt.prepare(sim, e)
			}
			if tt.warmup {
				// The first send of the hour goes; the second meets the limit.
				if _, err := e.c.SendPart(sendCtx(t), connectors.Address{Account: "1001", PlatformID: "warmup"}, part); err != nil {
					t.Fatal(err)
				}
			}
			before := sim.Requests().Count(simkit.Match("POST", "/v1/"))
			_, err := e.c.SendPart(sendCtx(t), to, part)
			if err == nil {
				t.Fatal("the send succeeded")
			}
			c := connectors.Classify(err)
			if c.Class != tt.class || c.Code != tt.code || c.PlatformCode != tt.platformCode || c.RetryAfter != tt.retryAfter {
				t.Fatalf("%v: got %s %s %q %s, want %s %s %q %s", err, c.Class, c.Code, c.PlatformCode, c.RetryAfter, tt.class, tt.code, tt.platformCode, tt.retryAfter)
			}
			if reached := sim.Requests().Count(simkit.Match("POST", "/v1/")) > before; reached != tt.reached {
				t.Fatalf("the simulator received the request: %v, want %v", reached, tt.reached)
			}
			for _, m := range sim.AllSent() {
				if m.To == to.PlatformID {
					t.Fatalf("a failed send was recorded: %+v", m)
				}
			}
		})
	}
}

func TestSendPartHonoursItsContext(t *testing.T) {
	e, sim := sendEnv(t, fakechatsim.Options{SendDelay: time.Hour})
	sim.AddCustomer("1001", maria.ID)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := e.c.SendPart(ctx, connectors.Address{Account: "1001", PlatformID: maria.ID}, outMessage{Text: "hi"})
	if c := connectors.Classify(err); err == nil || c.Class != connectors.ClassTransient || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestSendPartRefusesAForeignPart(t *testing.T) {
	e := newEnv(t, validSettings)
	_, err := e.c.SendPart(t.Context(), connectors.Address{Account: "1001", PlatformID: "x"}, "a string")
	if connectors.Classify(err).Class != connectors.ClassPermanent {
		t.Fatalf("err = %v", err)
	}
}
