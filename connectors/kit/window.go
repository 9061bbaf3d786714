package kit

import (
	"fmt"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// Window is a reply window with an optional extension for replies a human
// agent wrote: Messenger and Instagram allow 24 hours, and 7 days with the
// HUMAN_AGENT tag; WhatsApp Cloud allows 24 hours. It implements
// connectors.ReplyWindow.
type Window struct {
	// Standard is how long after the customer's last message a reply goes
	// as usual.
	Standard time.Duration
	// HumanAgent is how long a reply with human_agent set may still go,
	// with Admission.Tag HumanAgentTag; 0 when the platform has no such
	// extension.
	HumanAgent    time.Duration
	HumanAgentTag string
}

// Expires implements connectors.ReplyWindow.
func (w Window) Expires(last time.Time) time.Time { return last.Add(w.Standard) }

// Admit implements connectors.ReplyWindow: within the standard window a
// reply goes as usual; after it, a human agent's reply goes with the tag
// while the extension lasts; anything else fails with window_closed.
func (w Window) Admit(reply *normalize.Reply, last, now time.Time) (connectors.Admission, error) {
	if last.IsZero() {
		return connectors.Admission{}, connectors.Permanent(normalize.ErrWindowClosed, "",
			fmt.Errorf("the customer has not written in this conversation, so the platform allows no reply"))
	}
	if !now.After(w.Expires(last)) {
		return connectors.Admission{}, nil
	}
	if reply != nil && reply.HumanAgent && w.HumanAgent > 0 && !now.After(last.Add(w.HumanAgent)) {
		return connectors.Admission{Tag: w.HumanAgentTag}, nil
	}
	msg := fmt.Sprintf("the reply window of %s after the customer's last message (%s) has closed", w.Standard, last.UTC().Format(time.RFC3339))
	if w.HumanAgent > 0 && (reply == nil || !reply.HumanAgent) {
		msg += fmt.Sprintf("; a human agent's reply (human_agent: true) may go for %s", w.HumanAgent)
	} else if w.HumanAgent > 0 {
		msg = fmt.Sprintf("the human agent window of %s after the customer's last message (%s) has closed", w.HumanAgent, last.UTC().Format(time.RFC3339))
	}
	return connectors.Admission{}, connectors.Permanent(normalize.ErrWindowClosed, "", fmt.Errorf("%s", msg))
}

var _ connectors.ReplyWindow = Window{}
