package kit_test

import (
	"slices"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

func TestRatesLimits(t *testing.T) {
	telegramish := kit.Rates{PerAccount: 30, Burst: 5, PerConversation: time.Second, PerGroup: 3 * time.Second}
	for _, tt := range []struct {
		name  string
		rates kit.Rates
		kind  normalize.ConversationKind
		want  connectors.Limits
	}{
		{"a direct conversation gets the conversation interval", telegramish, normalize.KindDirect,
			connectors.Limits{Account: "bot-7001", PerAccount: 30, Burst: 5, Interval: time.Second}},
		{"a group gets the group interval", telegramish, normalize.KindGroup,
			connectors.Limits{Account: "bot-7001", PerAccount: 30, Burst: 5, Interval: 3 * time.Second}},
		{"a channel gets the group interval", telegramish, normalize.KindChannel,
			connectors.Limits{Account: "bot-7001", PerAccount: 30, Burst: 5, Interval: 3 * time.Second}},
		{"a group without its own interval gets the conversation interval",
			kit.Rates{PerAccount: 30, Burst: 5, PerConversation: time.Second}, normalize.KindGroup,
			connectors.Limits{Account: "bot-7001", PerAccount: 30, Burst: 5, Interval: time.Second}},
		{"a burst of zero is one", kit.Rates{PerAccount: 1}, normalize.KindDirect,
			connectors.Limits{Account: "bot-7001", PerAccount: 1, Burst: 1}},
		{"no limits at all still bursts one", kit.Rates{}, normalize.KindChannel,
			connectors.Limits{Account: "bot-7001", Burst: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.rates.Limits(connectors.Address{ConversationID: "c_1", Kind: tt.kind, PlatformID: "42", Account: "bot-7001"})
			if got != tt.want {
				t.Errorf("Limits = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLimitSettingsApply(t *testing.T) {
	defaults := kit.Rates{PerAccount: 30, Burst: 1, PerConversation: time.Second, PerGroup: 3 * time.Second}
	ptr := func(v float64) *float64 { return &v }
	iptr := func(v int) *int { return &v }
	for _, tt := range []struct {
		name         string
		settings     kit.LimitSettings
		want         kit.Rates
		wantProblems []string // paths
	}{
		{"no settings keep the defaults", kit.LimitSettings{}, defaults, nil},
		{"per_account overrides the account rate", kit.LimitSettings{PerAccount: ptr(100)},
			kit.Rates{PerAccount: 100, Burst: 1, PerConversation: time.Second, PerGroup: 3 * time.Second}, nil},
		{"per_account 0 removes the account limit", kit.LimitSettings{PerAccount: ptr(0)},
			kit.Rates{Burst: 1, PerConversation: time.Second, PerGroup: 3 * time.Second}, nil},
		{"burst overrides the burst", kit.LimitSettings{Burst: iptr(10)},
			kit.Rates{PerAccount: 30, Burst: 10, PerConversation: time.Second, PerGroup: 3 * time.Second}, nil},
		{"per_conversation overrides the conversation interval", kit.LimitSettings{PerConversation: "500ms"},
			kit.Rates{PerAccount: 30, Burst: 1, PerConversation: 500 * time.Millisecond, PerGroup: 3 * time.Second}, nil},
		{"per_group 0s removes the group interval", kit.LimitSettings{PerGroup: "0s"},
			kit.Rates{PerAccount: 30, Burst: 1, PerConversation: time.Second}, nil},
		{"a negative per_account is a problem", kit.LimitSettings{PerAccount: ptr(-1)}, defaults, []string{"limits.per_account"}},
		{"a burst below one is a problem", kit.LimitSettings{Burst: iptr(0)}, defaults, []string{"limits.burst"}},
		{"a per_conversation that is no duration is a problem", kit.LimitSettings{PerConversation: "soon"}, defaults, []string{"limits.per_conversation"}},
		{"a negative per_group is a problem", kit.LimitSettings{PerGroup: "-1s"}, defaults, []string{"limits.per_group"}},
		{"every invalid setting is reported at once and valid ones apply",
			kit.LimitSettings{PerAccount: ptr(-1), Burst: iptr(-3), PerConversation: "2s", PerGroup: "1 minute"},
			kit.Rates{PerAccount: 30, Burst: 1, PerConversation: 2 * time.Second, PerGroup: 3 * time.Second},
			[]string{"limits.per_account", "limits.burst", "limits.per_group"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := tt.settings.Apply(defaults, "limits")
			if got != tt.want {
				t.Errorf("Apply = %+v, want %+v", got, tt.want)
			}
			paths := make([]string, len(problems))
			for i, p := range problems {
				paths[i] = p.Path
				if p.Message == "" {
					t.Errorf("problem at %s has no message", p.Path)
				}
			}
			if !slices.Equal(paths, tt.wantProblems) {
				t.Errorf("problems = %v, want at %v", problems, tt.wantProblems)
			}
		})
	}
}
