package simkit

import "context"

// Demo is a platform simulator as `parley demo` drives it. The demo runs
// the same script on every registered platform — two customers; a text, a
// photo, a location, an edit, a reaction and a button press; replies that
// meet a 429 and a 5xx and are retried, and one to a customer who blocked
// the business, which is dead-lettered — so each simulator only says how
// its platform does each step.
type Demo interface {
	// Settings is the platform block, in YAML, of a connector pointed at
	// the simulator.
	Settings() string
	// Attach tells the simulator where Parley serves the connector's
	// webhook, once the gateway listens; a poller's simulator ignores it.
	Attach(webhookURL string)
	// Close stops the simulator.
	Close()

	// Text, Photo and Location make customer c send a message, and return
	// its platform id.
	Text(ctx context.Context, c Customer, text string) (string, error)
	Photo(ctx context.Context, c Customer, caption string, png []byte) (string, error)
	Location(ctx context.Context, c Customer, lat, lon float64) (string, error)
	// Edit changes the text of c's message id.
	Edit(ctx context.Context, c Customer, id, text string) error
	// React puts emoji on the business's message id.
	React(ctx context.Context, c Customer, id, emoji string) error
	// Press presses the button choice of the business's message id.
	Press(ctx context.Context, c Customer, id, choice string) error
	// Block makes c block the business: sends to c then fail as the
	// platform says "recipient unavailable".
	Block(c Customer)

	// FailNextSend makes the next send fail as kind (FailRateLimited or
	// FailUnavailable).
	FailNextSend(kind string)
	// Sent returns what the business sent c, in order.
	Sent(c Customer) []Sent
	// PressesAnswered counts the button presses the connector followed up
	// on where the platform asks for that (Telegram's answerCallbackQuery);
	// -1 for a platform without follow-ups.
	PressesAnswered() int
}

// Failure kinds of Demo.FailNextSend.
const (
	FailRateLimited = "rate_limited" // the platform's 429 with a retry-after of 1s
	FailUnavailable = "unavailable"  // the platform's 5xx
)

// Customer is one simulated customer. Key tells customers apart; each
// simulator derives its platform's ids from it.
type Customer struct {
	Key      int
	Name     string
	Username string
	Language string
}

// Sent is one message the business sent, as the platform received it.
type Sent struct {
	PlatformID string
	// Text is the text as the platform shows it, without markup.
	Text string
	// Markup is the text as sent (HTML, mrkdwn...), for the transcript.
	Markup string
	// Choices are the ids of the buttons attached.
	Choices []string
}

// DemoFactory starts a platform's simulator for the demo.
type DemoFactory func(ctx context.Context) (Demo, error)
