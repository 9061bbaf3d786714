package fakechatsim

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/parley-gateway/parley/connectors/simkit"
)

// NewDemo starts a simulator for `parley demo`: one account, customers
// named by their key. It is a simkit.DemoFactory.
func NewDemo(ctx context.Context) (simkit.Demo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := Start(Options{})
	if err != nil {
		return nil, err
	}
	return &demo{s: s, account: DefaultAccount}, nil
}

// demo drives a Server through the demo's script.
type demo struct {
	s       *Server
	account string
}

func (d *demo) Settings() string         { return d.s.Settings() }
func (d *demo) Attach(webhookURL string) { d.s.Attach(webhookURL) }
func (d *demo) Close()                   { _ = d.s.Close() }

// user is the fakechat customer of a demo customer.
func (d *demo) user(c simkit.Customer) User {
	return User{ID: "cust_" + strconv.Itoa(c.Key), Name: c.Name, Username: c.Username, Language: c.Language}
}

// push delivers one event and fails unless it was acknowledged.
func (d *demo) push(ctx context.Context, e Event) (string, error) {
	if _, err := d.s.Push(ctx, d.account, e); err != nil {
		return "", fmt.Errorf("pushing a fakechat %s event: %w", e.Type, err)
	}
	return e.ID, nil
}

func (d *demo) Text(ctx context.Context, c simkit.Customer, text string) (string, error) {
	return d.push(ctx, d.s.Text(d.user(c), text))
}

func (d *demo) Photo(ctx context.Context, c simkit.Customer, caption string, png []byte) (string, error) {
	att := d.s.AddMedia(d.account, png, "image/png", "photo.png")
	return d.push(ctx, d.s.Message(d.user(c), caption, att))
}

func (d *demo) Location(ctx context.Context, c simkit.Customer, lat, lon float64) (string, error) {
	return d.push(ctx, d.s.Location(d.user(c), lat, lon))
}

func (d *demo) Edit(ctx context.Context, c simkit.Customer, id, text string) error {
	_, err := d.push(ctx, d.s.Edit(d.user(c), id, text))
	return err
}

func (d *demo) React(ctx context.Context, c simkit.Customer, id, emoji string) error {
	_, err := d.push(ctx, d.s.Reaction(d.user(c), id, emoji))
	return err
}

// Press presses the button choice of the business's message id, with the
// title the message gave it.
func (d *demo) Press(ctx context.Context, c simkit.Customer, id, choice string) error {
	m, ok := d.s.SentMessage(id)
	if !ok {
		return errors.New("fakechat message " + id + " was not sent by the business")
	}
	title := ""
	for _, ch := range m.Choices {
		if ch.ID == choice {
			title = ch.Title
		}
	}
	if title == "" {
		return fmt.Errorf("fakechat message %s has no button %q", id, choice)
	}
	_, err := d.push(ctx, d.s.Postback(d.user(c), id, choice, title))
	return err
}

func (d *demo) Block(c simkit.Customer) { d.s.Block(d.user(c).ID) }

func (d *demo) FailNextSend(kind string) {
	switch kind {
	case simkit.FailRateLimited:
		d.s.FailNext(KeySend, 1, RateLimited(time.Second))
	case simkit.FailUnavailable:
		d.s.FailNext(KeySend, 1, Unavailable())
	}
}

// Sent returns what the business sent c. fakechat shows plain text, so
// Text and Markup are the same.
func (d *demo) Sent(c simkit.Customer) []simkit.Sent {
	var out []simkit.Sent
	for _, m := range d.s.Sent(d.account, d.user(c).ID) {
		sent := simkit.Sent{PlatformID: m.ID, Text: m.Text, Markup: m.Text}
		for _, ch := range m.Choices {
			sent.Choices = append(sent.Choices, ch.ID)
		}
		out = append(out, sent)
	}
	return out
}

// PressesAnswered is -1: fakechat asks for no follow-up on a press.
func (d *demo) PressesAnswered() int { return -1 }

var _ simkit.DemoFactory = NewDemo
