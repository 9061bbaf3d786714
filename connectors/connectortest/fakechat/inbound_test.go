package fakechat

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

var update = flag.Bool("update", false, "rewrite testdata/inbound/*.golden.json from the current mapping")

// inTestContext is the connector every fixture is mapped for: it serves
// accounts 1001 and 1002.
var inTestContext = inboundContext{
	Region:     "eu",
	Connector:  "fc-eu",
	Known:      func(a string) bool { return a == "1001" || a == "1002" },
	ReceivedAt: testNow,
}

// golden is what a golden file holds: per update, its encoded events as
// published and what the update says beyond them. Fetch handles, reasons
// and ledger lookups never reach the published JSON, so they are listed
// apart.
type golden struct {
	Updates []goldenUpdate `json:"updates"`
}

type goldenUpdate struct {
	ID       string            `json:"id,omitempty"`
	Events   []json.RawMessage `json:"events"`
	Media    []goldenMedia     `json:"media,omitempty"`
	Ignored  string            `json:"ignored,omitempty"`
	Error    string            `json:"error,omitempty"`
	FollowUp *goldenFollowUp   `json:"follow_up,omitempty"`
	Raw      json.RawMessage   `json:"raw"`
}

type goldenMedia struct {
	Event             int    `json:"event"`
	Attachment        int    `json:"attachment"`
	FetchRef          string `json:"fetch_ref"`
	UnavailableReason string `json:"unavailable_reason,omitempty"`
}

type goldenFollowUp struct {
	Lookup       string                   `json:"lookup"`
	IDs          []string                 `json:"ids,omitempty"`
	Conversation normalize.ConversationID `json:"conversation,omitempty"`
	Watermark    string                   `json:"watermark,omitempty"`
	ID           string                   `json:"id,omitempty"`
	Failure      *normalize.ReplyError    `json:"failure,omitempty"`
}

// fixtures lists the bodies under testdata/inbound, golden files excluded.
func fixtures(tb testing.TB) []string {
	tb.Helper()
	all, err := filepath.Glob(filepath.Join("testdata", "inbound", "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, f := range all {
		if !strings.HasSuffix(f, ".golden.json") {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		tb.Fatal("no fixtures in testdata/inbound")
	}
	return out
}

// render turns updates into their golden form, checking every event on
// the way.
func render(tb testing.TB, updates []kit.Update) []byte {
	tb.Helper()
	g := golden{Updates: []goldenUpdate{}}
	for _, u := range updates {
		gu := goldenUpdate{ID: u.ID, Events: []json.RawMessage{}, Ignored: u.Ignored, Raw: json.RawMessage(u.Raw)}
		if !json.Valid(u.Raw) {
			tb.Errorf("update %q: Raw is not JSON", u.ID)
		}
		if u.Err != nil {
			gu.Error = u.Err.Error()
		}
		for i, e := range u.Events {
			b, err := normalize.Encode(e)
			if err != nil {
				tb.Fatalf("encoding event %d of %q: %v", i, u.ID, err)
			}
			gu.Events = append(gu.Events, b)
			if e.Data.Account == "" {
				tb.Errorf("event %d of %q has no account", i, u.ID)
			}
			if e.Data.Message == nil {
				continue
			}
			for j, a := range e.Data.Message.Attachments {
				gu.Media = append(gu.Media, goldenMedia{Event: i, Attachment: j, FetchRef: a.FetchRef, UnavailableReason: a.UnavailableReason})
			}
		}
		if f, ok := u.Data.(*followUp); ok {
			gu.FollowUp = renderFollowUp(f)
		}
		g.Updates = append(g.Updates, gu)
	}
	out, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	return append(out, '\n')
}

func renderFollowUp(f *followUp) *goldenFollowUp {
	g := &goldenFollowUp{IDs: f.ids, Conversation: f.conv, ID: f.id}
	switch f.kind {
	case lookupSent:
		g.Lookup = "sent"
	case lookupSentUntil:
		g.Lookup = "sent_until"
		g.Watermark = f.watermark.Format("2006-01-02T15:04:05.000Z07:00")
	case lookupEcho:
		g.Lookup = "echo"
	case lookupFailure:
		g.Lookup = "late_failure"
		g.Failure = &f.failure
	}
	return g
}

func TestInboundGolden(t *testing.T) {
	for _, path := range fixtures(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			updates, err := parseBody(inTestContext, raw)
			if err != nil {
				t.Fatalf("parseBody: %v", err)
			}
			got := render(t, updates)
			golden := strings.TrimSuffix(path, ".json") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("mapping of %s differs from %s (run with -update and review the diff)\ngot:\n%s", path, golden, got)
			}
		})
	}
}

func TestParseRefusesBodiesThatAreNotFakechatWebhooks(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":              `{"object":"fakechat","entry":[`,
		"trailing data":         `{"object":"fakechat","entry":[]} {}`,
		"not an object":         `[1,2,3]`,
		"another object":        `{"object":"page","entry":[]}`,
		"no object":             `{"entry":[]}`,
		"no entry":              `{"object":"fakechat"}`,
		"entry not an array":    `{"object":"fakechat","entry":{}}`,
		"entry not an object":   `{"object":"fakechat","entry":[42]}`,
		"entry without account": `{"object":"fakechat","entry":[{"time":1,"events":[]}]}`,
		"entry without events":  `{"object":"fakechat","entry":[{"account":"1001","time":1}]}`,
		"events not an array":   `{"object":"fakechat","entry":[{"account":"1001","events":{}}]}`,
		"empty":                 ``,
	} {
		t.Run(name, func(t *testing.T) {
			if updates, err := parseBody(inTestContext, []byte(body)); err == nil {
				t.Fatalf("parseBody accepted it: %d updates", len(updates))
			}
		})
	}
}

// A redelivery maps to the same ids, and ids derive from the account and
// the customer, never from the connector id.
func TestIDsAreDeterministicAndIndependentOfTheConnector(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "inbound", "batch_accounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := parseBody(inTestContext, body)
	if err != nil {
		t.Fatal(err)
	}
	renamed := inTestContext
	renamed.Connector, renamed.Region = "fc-renamed", "us"
	second, err := parseBody(renamed, body)
	if err != nil {
		t.Fatal(err)
	}
	a, b := first[0].Events[0], second[0].Events[0]
	if a.ID != b.ID || a.Subject != b.Subject || a.Data.Sender.ID != b.Data.Sender.ID {
		t.Fatalf("ids changed with the connector: %s %s %s vs %s %s %s", a.ID, a.Subject, a.Data.Sender.ID, b.ID, b.Subject, b.Data.Sender.ID)
	}
	// The same customer and message id on another account is another
	// conversation and another event.
	other := first[2].Events[0]
	if other.ID == a.ID || other.Subject == a.Subject || other.Data.Sender.ID == a.Data.Sender.ID {
		t.Fatal("two accounts share ids")
	}
	if other.Data.Account != "1002" || a.Data.Account != "1001" {
		t.Fatalf("accounts %q and %q", a.Data.Account, other.Data.Account)
	}
	if got := first[3]; got.Err == nil || len(got.Events) != 0 {
		t.Fatalf("the unknown account's entry is %+v, want an update with Err", got)
	}
}
