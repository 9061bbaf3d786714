package kit

import (
	"fmt"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// Rates are a platform's sending limits as a connector applies them: its
// documented defaults, with an operator's LimitSettings on top.
type Rates struct {
	// PerAccount is the sustained rate of one platform account, in
	// messages per second (0: none); Burst how many may go at once.
	PerAccount float64
	Burst      int
	// PerConversation is the minimum gap between two messages to one
	// direct conversation; PerGroup to a group or channel (0: the same as
	// PerConversation).
	PerConversation time.Duration
	PerGroup        time.Duration
}

// Limits returns the limits of one conversation: the account budget is
// the address's account, the interval the one for its kind.
func (r Rates) Limits(to connectors.Address) connectors.Limits {
	interval := r.PerConversation
	switch to.Kind {
	case normalize.KindGroup, normalize.KindChannel:
		if r.PerGroup > 0 {
			interval = r.PerGroup
		}
	}
	return connectors.Limits{Account: to.Account, PerAccount: r.PerAccount, Burst: max(r.Burst, 1), Interval: interval}
}

// LimitSettings is the `limits` key an operator may add to a connector's
// block to override its platform's defaults, for an account with a higher
// tier or a stricter policy of one's own. Every field is optional.
type LimitSettings struct {
	PerAccount      *float64 `yaml:"per_account"`      // messages per second across one account
	Burst           *int     `yaml:"burst"`            // how many of them may go at once
	PerConversation string   `yaml:"per_conversation"` // minimum gap between two messages to one person, "1s"
	PerGroup        string   `yaml:"per_group"`        // ... to a group or channel
}

// Apply returns defaults with the settings on top, and every invalid
// setting as a problem under path ("limits").
func (s LimitSettings) Apply(defaults Rates, path string) (Rates, []connectors.Problem) {
	out := defaults
	var problems []connectors.Problem
	add := func(key, format string, args ...any) {
		problems = append(problems, connectors.Problem{Path: path + "." + key, Message: fmt.Sprintf(format, args...)})
	}
	if s.PerAccount != nil {
		if *s.PerAccount < 0 {
			add("per_account", "must be 0 (no limit) or a positive number of messages per second")
		} else {
			out.PerAccount = *s.PerAccount
		}
	}
	if s.Burst != nil {
		if *s.Burst < 1 {
			add("burst", "must be at least 1")
		} else {
			out.Burst = *s.Burst
		}
	}
	for _, f := range []struct {
		key string
		in  string
		dst *time.Duration
	}{{"per_conversation", s.PerConversation, &out.PerConversation}, {"per_group", s.PerGroup, &out.PerGroup}} {
		if f.in == "" {
			continue
		}
		d, err := time.ParseDuration(f.in)
		if err != nil || d < 0 {
			add(f.key, "must be a duration such as 1s (0s for none)")
			continue
		}
		*f.dst = d
	}
	return out, problems
}
