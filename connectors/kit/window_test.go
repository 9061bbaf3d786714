package kit_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

func TestWindowExpires(t *testing.T) {
	w := kit.Window{Standard: 24 * time.Hour, HumanAgent: 7 * 24 * time.Hour}
	if got, want := w.Expires(start), start.Add(24*time.Hour); !got.Equal(want) {
		t.Errorf("Expires = %s, want %s: the standard window, not the extension", got, want)
	}
}

func TestWindowAdmit(t *testing.T) {
	const day = 24 * time.Hour
	meta := kit.Window{Standard: day, HumanAgent: 7 * day, HumanAgentTag: "HUMAN_AGENT"}
	whatsapp := kit.Window{Standard: day}
	plain := &normalize.Reply{}
	agent := &normalize.Reply{HumanAgent: true}

	for _, tt := range []struct {
		name    string
		window  kit.Window
		reply   *normalize.Reply
		last    time.Time
		now     time.Time
		wantTag string
		// wantClosed lists what the window_closed message must say; nil
		// when the reply is admitted.
		wantClosed []string
	}{
		{name: "a reply inside the window goes", window: meta, reply: plain, last: start, now: start.Add(time.Hour)},
		{name: "a reply at the exact end of the window goes", window: meta, reply: plain, last: start, now: start.Add(day)},
		{name: "a reply without a Reply value inside the window goes", window: meta, last: start, now: start.Add(time.Hour)},
		{name: "a reply after the window is closed and names the extension", window: meta, reply: plain,
			last: start, now: start.Add(day + time.Nanosecond),
			wantClosed: []string{"reply window of 24h0m0s", "2026-11-20T09:30:00Z", "human_agent: true", "168h0m0s"}},
		{name: "a human agent's reply inside the extension goes with the tag", window: meta, reply: agent,
			last: start, now: start.Add(3 * day), wantTag: "HUMAN_AGENT"},
		{name: "a human agent's reply at the end of the extension goes with the tag", window: meta, reply: agent,
			last: start, now: start.Add(7 * day), wantTag: "HUMAN_AGENT"},
		{name: "a human agent's reply inside the window goes without the tag", window: meta, reply: agent,
			last: start, now: start.Add(time.Hour)},
		{name: "a human agent's reply after the extension is closed", window: meta, reply: agent,
			last: start, now: start.Add(8 * day),
			wantClosed: []string{"human agent window of 168h0m0s", "2026-11-20T09:30:00Z"}},
		{name: "a conversation the customer never wrote in is closed", window: meta, reply: agent,
			now: start, wantClosed: []string{"has not written"}},
		{name: "a human agent's reply without an extension is closed after the window", window: whatsapp, reply: agent,
			last: start, now: start.Add(2 * day), wantClosed: []string{"reply window of 24h0m0s"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.window.Admit(tt.reply, tt.last, tt.now)
			if tt.wantClosed == nil {
				if err != nil {
					t.Fatalf("Admit = %v, want the reply admitted", err)
				}
				if got.Tag != tt.wantTag {
					t.Errorf("Admission.Tag = %q, want %q", got.Tag, tt.wantTag)
				}
				return
			}
			ce, ok := errors.AsType[*connectors.Error](err)
			if !ok || ce.Class != connectors.ClassPermanent || ce.Code != normalize.ErrWindowClosed {
				t.Fatalf("Admit = %v, want a permanent window_closed failure", err)
			}
			if got != (connectors.Admission{}) {
				t.Errorf("Admission = %+v with the failure, want none", got)
			}
			for _, part := range tt.wantClosed {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("Admit = %q, want it to say %q", err, part)
				}
			}
			if tt.window.HumanAgent == 0 && strings.Contains(err.Error(), "human_agent") {
				t.Errorf("Admit = %q offers a human agent extension the platform does not have", err)
			}
		})
	}
}
