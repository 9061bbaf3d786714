package connectors

import (
	"time"

	"github.com/parley-gateway/parley/normalize"
)

// Policy is a connector's answer, for one conversation, to how fast and
// until when Parley may send there. kit.Rates and kit.Window build one.
type Policy struct {
	Limits Limits
	// Window is the reply window; nil when the platform has none (Telegram,
	// Slack, WhatsApp on the multi-device protocol).
	Window ReplyWindow
}

// Limits is how fast the outbox may send to one conversation and through
// the account it belongs to. Budgets are kept per connector and Account:
// a connector with fifty pages has fifty account budgets.
type Limits struct {
	// Account names the budget PerAccount applies to, within the
	// connector: every send with the same Account shares one token bucket.
	// Usually Address.Account; a platform whose limit spans accounts (one
	// app for many pages) names the shared key instead.
	Account string
	// PerAccount is the sustained rate across all conversations of the
	// account, in messages per second; 0 means no limit. Burst is how many
	// may go at once (at least 1).
	PerAccount float64
	Burst      int
	// Interval is the minimum gap between two messages to this
	// conversation (Telegram: 1s to a person, 3s to a group); 0 for none.
	Interval time.Duration
}

// ReplyWindow is a platform's rule on how long after the customer's last
// message a business may answer. One value answers both questions, so the
// window an inbound event announces and the one the outbox enforces can
// never disagree.
type ReplyWindow interface {
	// Expires is when the standard window closes for a conversation whose
	// customer last wrote at last. Ingest stamps it on every inbound event
	// as window_expires_at and the directory records it.
	Expires(last time.Time) time.Time

	// Admit decides whether reply may go at now to a conversation whose
	// customer last wrote at last (zero: never), and how: the Admission is
	// handed to Plan. A reply that may not go fails with
	// Permanent(normalize.ErrWindowClosed, ...). A reply Admit accepts
	// without an extension is exactly one sent at or before Expires(last).
	Admit(reply *normalize.Reply, last, now time.Time) (Admission, error)
}

// Admission is how an admitted reply goes out. It is opaque to the outbox,
// which only carries it from Admit to Plan.
type Admission struct {
	// Tag names the platform's way of sending past the standard window
	// (Meta's HUMAN_AGENT message tag); "" within it.
	Tag string
}
