package telegramsim

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors/simkit"
)

// demoToken is the bot token of the demo's simulated bot.
const demoToken = "7000001:PARLEY-DEMO-TOKEN"

// NewDemo starts a simulator for `parley demo`: a bot polled with
// getUpdates, customers as private chats whose ids derive from their key.
func NewDemo(ctx context.Context) (simkit.Demo, error) {
	srv, err := New(Options{Token: demoToken, BotUsername: "parley_demo_bot", BotName: "Parley Demo"}).Start(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting the telegram simulator: %w", err)
	}
	return &demo{srv: srv}, nil
}

type demo struct{ srv *Server }

var _ simkit.Demo = (*demo)(nil)

func (d *demo) Settings() string {
	return fmt.Sprintf("token: %q\nmode: polling\napi_url: %q\npoll_timeout: 1s\n", demoToken, d.srv.URL)
}

func (d *demo) Attach(string) {} // Parley polls

func (d *demo) Close() { _ = d.srv.Close() }

// chat is a customer's private chat id (and user id).
func chat(c simkit.Customer) int64 { return 412587000 + int64(c.Key) }

func user(c simkit.Customer) models.User {
	return models.User{ID: chat(c), FirstName: c.Name, Username: c.Username, LanguageCode: c.Language}
}

func (d *demo) enqueue(u models.Update) string {
	d.srv.Enqueue(u)
	switch {
	case u.Message != nil:
		return strconv.Itoa(u.Message.ID)
	case u.EditedMessage != nil:
		return strconv.Itoa(u.EditedMessage.ID)
	}
	return ""
}

func (d *demo) Text(_ context.Context, c simkit.Customer, text string) (string, error) {
	return d.enqueue(d.srv.UserText(chat(c), user(c), text)), nil
}

func (d *demo) Photo(_ context.Context, c simkit.Customer, caption string, png []byte) (string, error) {
	return d.enqueue(d.srv.Sim.Photo(chat(c), user(c), caption, png)), nil
}

func (d *demo) Location(_ context.Context, c simkit.Customer, lat, lon float64) (string, error) {
	return d.enqueue(d.srv.Sim.Location(chat(c), user(c), lat, lon)), nil
}

func messageID(id string) (int, error) {
	n, err := strconv.Atoi(id)
	if err != nil {
		return 0, fmt.Errorf("%q is not a telegram message id", id)
	}
	return n, nil
}

func (d *demo) Edit(_ context.Context, c simkit.Customer, id, text string) error {
	n, err := messageID(id)
	if err != nil {
		return err
	}
	d.enqueue(d.srv.EditedText(chat(c), user(c), n, text))
	return nil
}

func (d *demo) React(_ context.Context, c simkit.Customer, id, emoji string) error {
	n, err := messageID(id)
	if err != nil {
		return err
	}
	d.enqueue(d.srv.Sim.Reaction(chat(c), user(c), n, emoji))
	return nil
}

func (d *demo) Press(_ context.Context, c simkit.Customer, id, choice string) error {
	n, err := messageID(id)
	if err != nil {
		return err
	}
	d.enqueue(d.srv.CallbackQuery(chat(c), user(c), n, choice))
	return nil
}

func (d *demo) Block(c simkit.Customer) { d.srv.Sim.Block(chat(c)) }

func (d *demo) FailNextSend(kind string) {
	f := InternalServerError()
	if kind == simkit.FailRateLimited {
		f = TooManyRequests(1)
	}
	d.srv.FailNext("sendMessage", 1, f)
}

func (d *demo) Sent(c simkit.Customer) []simkit.Sent {
	var out []simkit.Sent
	for _, m := range d.srv.SentTo(chat(c)) {
		s := simkit.Sent{PlatformID: strconv.Itoa(m.MessageID), Markup: m.Text}
		if m.Message != nil {
			s.Text = m.Message.Text
		}
		var kb models.InlineKeyboardMarkup
		if len(m.ReplyMarkup) > 0 && json.Unmarshal(m.ReplyMarkup, &kb) == nil {
			for _, row := range kb.InlineKeyboard {
				for _, b := range row {
					s.Choices = append(s.Choices, b.CallbackData)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

func (d *demo) PressesAnswered() int { return len(d.srv.CallbackAnswers()) }
