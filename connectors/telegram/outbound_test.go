package telegram

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/normalize"
)

// longText is paragraphs of prose, about 3.2 times Telegram's limit.
func longText() string {
	var b strings.Builder
	for i := range 60 {
		if i > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString("Paragraph " + strconv.Itoa(i) + ": ")
		b.WriteString(strings.Repeat("Parley keeps every message in order. ", 6))
	}
	return b.String()
}

func TestSendingRepliesThroughTheSimulator(t *testing.T) {
	tests := []struct {
		name  string
		reply normalize.Reply
		to    func(a connectors.Address) connectors.Address
		check func(t *testing.T, sent []telegramsim.SentMessage)
	}{
		{
			name:  "text over 4096 units goes as ordered messages that each fit",
			reply: normalize.Reply{Text: longText()},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				if len(sent) < 3 {
					t.Fatalf("sent %d messages, want the text split in at least 3", len(sent))
				}
				var joined []string
				for _, m := range sent {
					if m.Method != "sendMessage" {
						t.Errorf("method %s, want sendMessage", m.Method)
					}
					if n := normalize.UTF16Len(m.Message.Text); n > maxTextUnits {
						t.Errorf("a part has %d units", n)
					}
					joined = append(joined, m.Message.Text)
				}
				// Only whitespace may be lost at the cuts.
				got, want := strings.Fields(strings.Join(joined, " ")), strings.Fields(longText())
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("the parts do not add up to the text")
				}
			},
		},
		{
			name:  "Markdown is sent as HTML that Telegram parses into entities",
			reply: normalize.Reply{Text: "Your order **#8812** ships _today_: [track it](https://example.com/t?a=1&b=2)"},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				m := one(t, sent)
				if m.ParseMode != string(models.ParseModeHTML) {
					t.Errorf("parse_mode %q, want HTML", m.ParseMode)
				}
				if !strings.Contains(m.Text, "<b>#8812</b>") || !strings.Contains(m.Text, `<a href="https://example.com/t?a=1&amp;b=2">`) {
					t.Errorf("text %q lacks the HTML formatting", m.Text)
				}
				if got := m.Message.Text; got != "Your order #8812 ships today: track it" {
					t.Errorf("Telegram shows %q", got)
				}
				kinds := map[models.MessageEntityType]bool{}
				for _, e := range m.Message.Entities {
					kinds[e.Type] = true
				}
				for _, k := range []models.MessageEntityType{models.MessageEntityTypeBold, models.MessageEntityTypeItalic, models.MessageEntityTypeTextLink} {
					if !kinds[k] {
						t.Errorf("no %s entity in %+v", k, m.Message.Entities)
					}
				}
			},
		},
		{
			name: "choices become an inline keyboard on the last text message",
			reply: normalize.Reply{Text: longText(), Choices: []normalize.Choice{
				{ID: "yes", Title: "Yes"}, {ID: "no", Title: "No"},
			}},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				for _, m := range sent[:len(sent)-1] {
					if m.ReplyMarkup != nil {
						t.Errorf("a message before the last carries a keyboard: %s", m.ReplyMarkup)
					}
				}
				want := [][]models.InlineKeyboardButton{{{Text: "Yes", CallbackData: "yes"}}, {{Text: "No", CallbackData: "no"}}}
				checkKeyboard(t, sent[len(sent)-1], want)
			},
		},
		{
			name:  "reply_to quotes on the first message only and survives a deleted target",
			reply: normalize.Reply{Text: longText(), ReplyTo: "77"},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				for i, m := range sent {
					want := 0
					if i == 0 {
						want = 77
					}
					if m.ReplyTo != want {
						t.Errorf("message %d replies to %d, want %d", i, m.ReplyTo, want)
					}
				}
			},
		},
		{
			name: "an image URL is sent as a photo with an HTML caption",
			reply: normalize.Reply{Attachments: []normalize.ReplyAttachment{
				{URL: "https://cdn.example.com/img/receipt.JPG?sig=1", Caption: "**Receipt** for you"},
			}},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				m := one(t, sent)
				if m.Method != "sendPhoto" || m.Media != "https://cdn.example.com/img/receipt.JPG?sig=1" {
					t.Errorf("sent %s %q, want sendPhoto of the URL", m.Method, m.Media)
				}
				if m.Caption != "<b>Receipt</b> for you" || m.ParseMode != "HTML" {
					t.Errorf("caption %q (%s)", m.Caption, m.ParseMode)
				}
			},
		},
		{
			name: "another file is sent as a document, after the text",
			reply: normalize.Reply{Text: "Your invoice:", Attachments: []normalize.ReplyAttachment{
				{URL: "https://cdn.example.com/download?id=9", Filename: "invoice.pdf"},
			}},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				if len(sent) != 2 || sent[0].Method != "sendMessage" || sent[1].Method != "sendDocument" {
					t.Fatalf("sent %v, want sendMessage then sendDocument", methods(sent))
				}
				if sent[1].Media != "https://cdn.example.com/download?id=9" || sent[1].Caption != "" {
					t.Errorf("document %q caption %q", sent[1].Media, sent[1].Caption)
				}
			},
		},
		{
			name: "a caption over 1024 units follows the file as text",
			reply: normalize.Reply{Attachments: []normalize.ReplyAttachment{
				{URL: "https://cdn.example.com/p.png", Caption: strings.Repeat("long caption ", 100)},
			}},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				if len(sent) != 2 || sent[0].Method != "sendPhoto" || sent[1].Method != "sendMessage" {
					t.Fatalf("sent %v, want sendPhoto then sendMessage", methods(sent))
				}
				if sent[0].Caption != "" || !strings.HasPrefix(sent[1].Text, "long caption") {
					t.Errorf("caption %q, text %.40q", sent[0].Caption, sent[1].Text)
				}
			},
		},
		{
			name: "without text, choices ride on the last attachment",
			reply: normalize.Reply{
				Attachments: []normalize.ReplyAttachment{{URL: "https://x.example/a.png"}, {URL: "https://x.example/b.pdf"}},
				Choices:     []normalize.Choice{{ID: "ok", Title: "Got it"}},
			},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				if len(sent) != 2 || sent[0].ReplyMarkup != nil {
					t.Fatalf("sent %v with the first markup %s", methods(sent), sent[0].ReplyMarkup)
				}
				checkKeyboard(t, sent[1], [][]models.InlineKeyboardButton{{{Text: "Got it", CallbackData: "ok"}}})
			},
		},
		{
			name:  "a forum topic gets message_thread_id on every part",
			reply: normalize.Reply{Text: "in the topic", Attachments: []normalize.ReplyAttachment{{URL: "https://x.example/a.png"}}},
			to: func(a connectors.Address) connectors.Address {
				a.PlatformID, a.ThreadID, a.Kind = "-1001234", "7", normalize.KindThread
				return a
			},
			check: func(t *testing.T, sent []telegramsim.SentMessage) {
				for _, m := range sent {
					if m.ThreadID != 7 || m.ChatID != -1001234 {
						t.Errorf("%s to chat %d thread %d, want chat -1001234 thread 7", m.Method, m.ChatID, m.ThreadID)
					}
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			sim := startSim(t)
			env := connectortest.NewEnv(t, inPlatform, "tg-out")
			c := newTestConnector(t, env, settingsFor(ModePolling, sim.URL))
			to := testAddress()
			if tc.to != nil {
				to = tc.to(to)
			}
			reply := tc.reply
			reply.ID, reply.ConversationID = "rep-1", to.ConversationID
			if err := reply.Validate(); err != nil {
				t.Fatalf("test reply is invalid: %v", err)
			}
			parts, err := c.Plan(&reply, to, connectors.Admission{})
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			again, _ := c.Plan(&reply, to, connectors.Admission{})
			if a, b := mustJSON(t, parts), mustJSON(t, again); a != b {
				t.Errorf("Plan is not deterministic")
			}
			var ids []string
			for i, p := range parts {
				got, err := c.SendPart(ctx, to, p)
				if err != nil {
					t.Fatalf("SendPart %d: %v", i, err)
				}
				ids = append(ids, got.PlatformID)
			}
			sent := sim.Sent()
			if len(sent) != len(parts) {
				t.Fatalf("the simulator recorded %d sends for %d parts", len(sent), len(parts))
			}
			for i, m := range sent {
				if ids[i] != strconv.Itoa(m.MessageID) {
					t.Errorf("part %d: SentPart id %q, simulator message id %d", i, ids[i], m.MessageID)
				}
			}
			tc.check(t, sent)
		})
	}
}

func one(t *testing.T, sent []telegramsim.SentMessage) telegramsim.SentMessage {
	t.Helper()
	if len(sent) != 1 {
		t.Fatalf("sent %d messages, want 1", len(sent))
	}
	return sent[0]
}

func methods(sent []telegramsim.SentMessage) []string {
	var out []string
	for _, m := range sent {
		out = append(out, m.Method)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkKeyboard(t *testing.T, m telegramsim.SentMessage, want [][]models.InlineKeyboardButton) {
	t.Helper()
	var got struct {
		InlineKeyboard []([]map[string]any) `json:"inline_keyboard"`
	}
	if err := json.Unmarshal(m.ReplyMarkup, &got); err != nil {
		t.Fatalf("reply_markup %s: %v", m.ReplyMarkup, err)
	}
	if len(got.InlineKeyboard) != len(want) {
		t.Fatalf("keyboard %s, want %d rows", m.ReplyMarkup, len(want))
	}
	for i, row := range want {
		if len(got.InlineKeyboard[i]) != 1 {
			t.Fatalf("row %d has %d buttons, want 1", i, len(got.InlineKeyboard[i]))
		}
		b := got.InlineKeyboard[i][0]
		if b["text"] != row[0].Text || b["callback_data"] != row[0].CallbackData || len(b) != 2 {
			t.Errorf("row %d button %v, want text %q and callback_data %q only", i, b, row[0].Text, row[0].CallbackData)
		}
	}
}

func TestPlanRefusesWhatTelegramCannotSend(t *testing.T) {
	tests := []struct {
		name  string
		reply normalize.Reply
		to    connectors.Address
		code  normalize.ErrorCode
	}{
		{"a reply_to that is not a message id is invalid",
			normalize.Reply{Text: "hi", ReplyTo: "abc"}, testAddress(), normalize.ErrInvalidReply},
		{"a thread that is not a topic id is invalid",
			normalize.Reply{Text: "hi"}, connectors.Address{PlatformID: "-100", ThreadID: "x"}, normalize.ErrInvalidReply},
		{"a reply with nothing to send is invalid",
			normalize.Reply{Text: "   "}, testAddress(), normalize.ErrInvalidReply},
	}
	c := &Connector{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Plan(&tc.reply, tc.to, connectors.Admission{})
			got := connectors.Classify(err)
			if err == nil || got.Class != connectors.ClassPermanent || got.Code != tc.code {
				t.Errorf("Plan = %v, want a permanent %s", err, tc.code)
			}
		})
	}
}

func TestSendPartRefusesAnAddressWithoutAChat(t *testing.T) {
	sim := startSim(t)
	env := connectortest.NewEnv(t, inPlatform, "tg-out")
	c := newTestConnector(t, env, settingsFor(ModePolling, sim.URL))
	parts, err := c.Plan(&normalize.Reply{Text: "hi"}, testAddress(), connectors.Admission{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SendPart(t.Context(), connectors.Address{}, parts[0])
	var ce *connectors.Error
	if !errors.As(err, &ce) || ce.Code != normalize.ErrUnknownConversation {
		t.Errorf("SendPart to no chat = %v, want unknown_conversation", err)
	}
	if n := sim.Requests("sendMessage"); n != 0 {
		t.Errorf("%d requests made for an address without a chat", n)
	}
}
