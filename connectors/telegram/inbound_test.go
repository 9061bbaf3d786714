package telegram

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/normalize"
)

var update = flag.Bool("update", false, "rewrite testdata/inbound/*.golden.json from the current mapping")

// inTestContext is the connector every fixture is mapped for.
var inTestContext = inboundContext{
	Region:     "eu",
	Connector:  "tg-eu",
	BotID:      "7012345678",
	ReceivedAt: time.Date(2026, 11, 20, 9, 30, 0, 120_000_000, time.UTC),
}

// inGolden is what a golden file holds: the encoded events as published,
// plus what the result says beyond them. Attachment fetch handles and
// unavailable reasons never reach the published JSON, so they are listed
// apart.
type inGolden struct {
	Events          []json.RawMessage `json:"events"`
	Media           []inGoldenMedia   `json:"media,omitempty"`
	CallbackQueryID string            `json:"callback_query_id,omitempty"`
	Reachability    *inGoldenReach    `json:"reachability,omitempty"`
	Ignored         string            `json:"ignored,omitempty"`
}

type inGoldenMedia struct {
	Event             int    `json:"event"`
	Attachment        int    `json:"attachment"`
	FetchRef          string `json:"fetch_ref"`
	UnavailableReason string `json:"unavailable_reason,omitempty"`
}

type inGoldenReach struct {
	Conversation normalize.ConversationID `json:"conversation"`
	Reachable    bool                     `json:"reachable"`
	Reason       string                   `json:"reason"`
}

// inFixtures lists the raw updates under testdata/inbound, golden files
// excluded.
func inFixtures(tb testing.TB) []string {
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

// inMapFile parses and maps one fixture.
func inMapFile(tb testing.TB, ic inboundContext, path string) inboundResult {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	u, err := parseUpdate(raw)
	if err != nil {
		tb.Fatalf("parseUpdate: %v", err)
	}
	res, err := mapUpdate(ic, u)
	if err != nil {
		tb.Fatalf("mapUpdate: %v", err)
	}
	return res
}

// inRender turns a result into its golden form, checking every event is
// valid on the way.
func inRender(tb testing.TB, res inboundResult) []byte {
	tb.Helper()
	g := inGolden{Events: []json.RawMessage{}, CallbackQueryID: res.CallbackQueryID, Ignored: res.Ignored}
	for i, e := range res.Events {
		if err := e.Validate(); err != nil {
			tb.Errorf("event %d: %v", i, err)
		}
		b, err := normalize.Encode(e)
		if err != nil {
			tb.Fatalf("encoding event %d: %v", i, err)
		}
		g.Events = append(g.Events, b)
		if e.Data.Message == nil {
			continue
		}
		for j, a := range e.Data.Message.Attachments {
			g.Media = append(g.Media, inGoldenMedia{Event: i, Attachment: j, FetchRef: a.FetchRef, UnavailableReason: a.UnavailableReason})
		}
	}
	if r := res.Reachability; r != nil {
		g.Reachability = &inGoldenReach{Conversation: r.Conversation, Reachable: r.Reachable, Reason: r.Reason}
	}
	out, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	return append(out, '\n')
}

func TestInboundGolden(t *testing.T) {
	for _, path := range inFixtures(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			got := inRender(t, inMapFile(t, inTestContext, path))
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
				t.Errorf("mapping of %s differs from %s (run with -update and review the diff)\ngot:\n%s\nwant:\n%s", path, golden, got, want)
			}
		})
	}
}

func TestInboundRedeliveryYieldsIdenticalEventIDs(t *testing.T) {
	later := inTestContext
	later.ReceivedAt = inTestContext.ReceivedAt.Add(90 * time.Second)
	for _, path := range inFixtures(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			first := inMapFile(t, inTestContext, path)
			again := inMapFile(t, later, path)
			if len(first.Events) != len(again.Events) {
				t.Fatalf("redelivery gave %d events, first delivery %d", len(again.Events), len(first.Events))
			}
			for i := range first.Events {
				if first.Events[i].ID != again.Events[i].ID {
					t.Errorf("event %d: id %s on redelivery, %s the first time", i, again.Events[i].ID, first.Events[i].ID)
				}
			}
		})
	}
}

func TestInboundDistinctEventsHaveDistinctIDs(t *testing.T) {
	seen := map[normalize.EventID]string{}
	for _, path := range inFixtures(t) {
		for i, e := range inMapFile(t, inTestContext, path).Events {
			where := filepath.Base(path) + "#" + strconv.Itoa(i)
			if prev, ok := seen[e.ID]; ok {
				t.Errorf("event id %s of %s already used by %s", e.ID, where, prev)
			}
			seen[e.ID] = where
		}
	}
}

func TestParseUpdate(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr bool
		wantID  int64
	}{
		{name: "an update with a message decodes", body: `{"update_id": 7, "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "date": 1795167000, "text": "hi"}}`, wantID: 7},
		{name: "update_id zero is still present", body: `{"update_id": 0}`, wantID: 0},
		{name: "unknown fields are ignored", body: `{"update_id": 8, "some_future_update": {"x": 1}}`, wantID: 8},
		{name: "an empty body is rejected", body: ``, wantErr: true},
		{name: "null is rejected", body: `null`, wantErr: true},
		{name: "an array is rejected", body: `[{"update_id": 1}]`, wantErr: true},
		{name: "a string is rejected", body: `"update_id"`, wantErr: true},
		{name: "an object without update_id is rejected", body: `{"message": {"message_id": 1}}`, wantErr: true},
		{name: "a string update_id is rejected", body: `{"update_id": "12"}`, wantErr: true},
		{name: "trailing garbage is rejected", body: `{"update_id": 1} {"update_id": 2}`, wantErr: true},
		{name: "truncated JSON is rejected", body: `{"update_id": 1, "message": {`, wantErr: true},
		{name: "a message that is not an object is rejected", body: `{"update_id": 1, "message": 5}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := parseUpdate([]byte(tt.body))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseUpdate(%q) = %+v, want an error", tt.body, u)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseUpdate: %v", err)
			}
			if u.ID != tt.wantID {
				t.Errorf("update id %d, want %d", u.ID, tt.wantID)
			}
		})
	}
}

// inMapJSON parses and maps an inline update.
func inMapJSON(t *testing.T, body string) (inboundResult, error) {
	t.Helper()
	u, err := parseUpdate([]byte(body))
	if err != nil {
		t.Fatalf("parseUpdate: %v", err)
	}
	return mapUpdate(inTestContext, u)
}

func TestMapUpdateRejectsStructurallyInvalidUpdates(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{name: "message without chat", body: `{"update_id": 1, "message": {"message_id": 1, "from": {"id": 5, "first_name": "A"}, "date": 1795167000, "text": "hi"}}`},
		{name: "message without message_id", body: `{"update_id": 1, "message": {"chat": {"id": 5, "type": "private"}, "date": 1795167000, "text": "hi"}}`},
		{name: "message without date", body: `{"update_id": 1, "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "text": "hi"}}`},
		{name: "message dated after year 9999", body: `{"update_id": 1, "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "date": 999999999999, "text": "hi"}}`},
		{name: "edit dated before 1970", body: `{"update_id": 1, "edited_message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "date": 1795167000, "edit_date": -5, "text": "hi"}}`},
		{name: "photo without file_id", body: `{"update_id": 1, "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "date": 1795167000, "photo": [{"file_unique_id": "x", "width": 1, "height": 1}]}}`},
		{name: "callback query without id", body: `{"update_id": 1, "callback_query": {"from": {"id": 5, "first_name": "A"}, "data": "yes"}}`},
		{name: "callback query with neither chat nor sender", body: `{"update_id": 1, "callback_query": {"id": "77", "data": "yes"}}`},
		{name: "reaction without chat", body: `{"update_id": 1, "message_reaction": {"message_id": 3, "user": {"id": 5}, "date": 1795167000, "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}}`},
		{name: "reaction without date", body: `{"update_id": 1, "message_reaction": {"chat": {"id": 5, "type": "private"}, "message_id": 3, "user": {"id": 5}, "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}}`},
		{name: "deleted business messages with a zero id", body: `{"update_id": 1, "deleted_business_messages": {"business_connection_id": "b", "chat": {"id": 5, "type": "private"}, "message_ids": [0]}}`},
		{name: "my_chat_member without chat", body: `{"update_id": 1, "my_chat_member": {"from": {"id": 5}, "date": 1795167000, "old_chat_member": {"status": "member", "user": {"id": 1}}, "new_chat_member": {"status": "kicked", "user": {"id": 1}}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := inMapJSON(t, tt.body)
			if err == nil {
				t.Fatalf("mapUpdate = %+v, want an error", res)
			}
		})
	}
	t.Run("nil update", func(t *testing.T) {
		if _, err := mapUpdate(inTestContext, nil); err == nil {
			t.Fatal("mapUpdate(nil) succeeded, want an error")
		}
	})
}

func TestMapUpdateReachability(t *testing.T) {
	const private = `{"id": 412587349, "type": "private", "first_name": "María"}`
	const group = `{"id": -1001234567890, "type": "supergroup", "title": "Acme Support"}`
	const channel = `{"id": -1001112223334, "type": "channel", "title": "Acme News"}`
	const bot = `{"id": 7012345678, "is_bot": true, "first_name": "Acme Help"}`
	member := func(status string) string { return `{"status": "` + status + `", "user": ` + bot + `}` }
	tests := []struct {
		name          string
		chat          string
		old, new      string
		wantReachable bool
		wantReason    string
	}{
		{"user blocks the bot", private, member("member"), member("kicked"), false, "bot was blocked by the user"},
		{"user unblocks the bot", private, member("kicked"), member("member"), true, "bot was unblocked by the user"},
		{"bot removed from a group", group, member("member"), member("left"), false, "bot was removed from the group"},
		{"bot banned from a group", group, member("administrator"), member("kicked"), false, "bot was removed from the group"},
		{"bot added to a group", group, member("left"), member("member"), true, "bot was added to the group"},
		{"bot promoted to admin", group, member("member"), member("administrator"), true, "bot was added to the group"},
		{"bot muted in a group", group, member("member"), `{"status": "restricted", "user": ` + bot + `, "is_member": true, "can_send_messages": false}`, false, "bot was restricted in the group"},
		{"bot restricted but still allowed to write", group, member("member"), `{"status": "restricted", "user": ` + bot + `, "is_member": true, "can_send_messages": true}`, true, "bot was restricted in the group"},
		{"bot removed from a channel", channel, member("administrator"), member("left"), false, "bot was removed from the channel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"update_id": 1, "my_chat_member": {"chat": ` + tt.chat + `, "from": {"id": 412587349, "first_name": "María"}, "date": 1795167000, "old_chat_member": ` + tt.old + `, "new_chat_member": ` + tt.new + `}}`
			res, err := inMapJSON(t, body)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Events) != 0 || res.Ignored != "" {
				t.Errorf("events %d, ignored %q; want none", len(res.Events), res.Ignored)
			}
			r := res.Reachability
			if r == nil {
				t.Fatal("no reachability")
			}
			if r.Reachable != tt.wantReachable || r.Reason != tt.wantReason {
				t.Errorf("reachability %v %q, want %v %q", r.Reachable, r.Reason, tt.wantReachable, tt.wantReason)
			}
			if !normalize.ValidID("c_", string(r.Conversation)) {
				t.Errorf("conversation %q is not a conversation id", r.Conversation)
			}
		})
	}
}

func TestMapUpdateIDs(t *testing.T) {
	msg := func(kind, extra string) string {
		return `{"update_id": 1, "` + kind + `": {"message_id": 1412, "from": {"id": 412587349, "first_name": "María"}, "chat": {"id": 412587349, "type": "private"}, "date": 1795167000, "text": "hi"` + extra + `}}`
	}
	oneID := func(t *testing.T, body string) normalize.EventID {
		t.Helper()
		res, err := inMapJSON(t, body)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != 1 {
			t.Fatalf("%d events, want 1", len(res.Events))
		}
		return res.Events[0].ID
	}
	tests := []struct {
		name     string
		a, b     string
		wantSame bool
	}{
		{"the same message in another update keeps its id", msg("message", ""), strings.Replace(msg("message", ""), `"update_id": 1`, `"update_id": 99`, 1), true},
		{"a message and its edit differ", msg("message", ""), msg("edited_message", `, "edit_date": 1795167100`), false},
		{"two edits of one message differ", msg("edited_message", `, "edit_date": 1795167100`), msg("edited_message", `, "edit_date": 1795167200`), false},
		{"the bot's chat and a business chat with the same user differ", msg("message", ""), msg("business_message", `, "business_connection_id": "AAGb1"`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := oneID(t, tt.a), oneID(t, tt.b)
			if (a == b) != tt.wantSame {
				t.Errorf("ids %s and %s: same = %v, want %v", a, b, a == b, tt.wantSame)
			}
		})
	}
}

func TestMapUpdateDownloadLimit(t *testing.T) {
	tests := []struct {
		name       string
		size       int64
		wantStatus normalize.MediaState
	}{
		{"a file of exactly 20 MiB can be fetched", 20 * 1024 * 1024, normalize.MediaPending},
		{"a file one byte over 20 MiB cannot", 20*1024*1024 + 1, normalize.MediaUnavailable},
		{"a file of unknown size is tried", 0, normalize.MediaPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"update_id": 1, "message": {"message_id": 9, "chat": {"id": 5, "type": "private"}, "from": {"id": 5, "first_name": "A"}, "date": 1795167000,
				"document": {"file_id": "BQ1", "file_unique_id": "U1", "file_name": "a.bin", "file_size": ` + strconv.FormatInt(tt.size, 10) + `}}}`
			res, err := inMapJSON(t, body)
			if err != nil {
				t.Fatal(err)
			}
			a := res.Events[0].Data.Message.Attachments[0]
			if a.Status != tt.wantStatus {
				t.Errorf("status %q, want %q", a.Status, tt.wantStatus)
			}
			if (a.UnavailableReason != "") != (tt.wantStatus == normalize.MediaUnavailable) {
				t.Errorf("unavailable reason %q with status %q", a.UnavailableReason, a.Status)
			}
		})
	}
}

func TestMapUpdateCallbackIsDatedOnReceipt(t *testing.T) {
	res := inMapFile(t, inTestContext, filepath.Join("testdata", "inbound", "callback_query.json"))
	if got := res.Events[0].Time; !got.Equal(inTestContext.ReceivedAt) {
		t.Errorf("time %v, want the receive time %v: callback queries carry no date", got, inTestContext.ReceivedAt)
	}
	if res.CallbackQueryID == "" {
		t.Error("no callback query id to answer")
	}
}
