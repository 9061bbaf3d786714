package normalize

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileEventSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	path, err := filepath.Abs("../docs/event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(path)
	if err != nil {
		t.Fatalf("compiling docs/event.schema.json: %v", err)
	}
	return s
}

func validateAgainst(t *testing.T, s *jsonschema.Schema, doc []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return s.Validate(v)
}

// sampleEvents builds one valid event of every type.
func sampleEvents() []*Event {
	at := time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)
	conv := NewConversationID("telegram", "42", "412587349")
	base := func(typ Type) *Event {
		return &Event{
			ID: NewEventID("telegram", "42", string(typ)), Source: Source("eu", "telegram", "tg-eu"),
			Type: typ, Subject: conv, Time: at,
			Data: Data{
				Region: "eu", Platform: "telegram", Connector: "tg-eu",
				Conversation: &Conversation{ID: conv, PlatformID: "412587349", Kind: KindDirect},
				Sender:       &Sender{ID: NewSenderID("telegram", "42", "412587349"), PlatformID: "412587349", Name: "Maria López"},
				ReceivedAt:   at.Add(120 * time.Millisecond),
			},
		}
	}
	var out []*Event
	for _, typ := range Types {
		e := base(typ)
		switch typ.Kind() {
		case "message":
			e.Data.Message = &Message{PlatformID: "1412", Text: "Hola!", Attachments: []Attachment{{
				Kind: AttachImage, MediaID: NewMediaID("telegram", "42", "f1"), MimeType: "image/jpeg", Status: MediaPending,
			}}}
			if typ == TypePostbackReceived {
				e.Data.Message.Postback = &Postback{ID: "yes", Title: "Yes", Payload: "yes"}
			}
		case "reaction":
			e.Data.Reaction = &Reaction{TargetPlatformID: "1412", Emoji: "👍"}
		case "receipt":
			e.Data.Receipt = &Receipt{PlatformIDs: []string{"1413"}}
		case "status":
			e.Data.Sender = nil
			e.Data.Reply = &ReplyStatus{ID: "rep-1", Attempts: 1, PlatformIDs: []string{"1413"}}
			if typ == TypeReplyFailed {
				e.Data.Reply.PlatformIDs = nil
				e.Data.Reply.Error = &ReplyError{Code: ErrRecipientUnavailable, Message: "bot was blocked by the user", PlatformCode: "403", Attempts: 1}
			}
		case "media":
			e.Data.Media = &MediaStatus{ID: NewMediaID("telegram", "42", "f1"), MimeType: "image/jpeg", Size: 1024,
				SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
		case "connector":
			e.Subject, e.Data.Conversation, e.Data.Sender = "", nil, nil
			e.Data.State = &ConnectorState{State: StateRunning}
		}
		out = append(out, e)
	}
	return out
}

func TestEveryEventTypeMatchesTheSchema(t *testing.T) {
	s := compileEventSchema(t)
	for _, e := range sampleEvents() {
		t.Run(string(e.Type), func(t *testing.T) {
			b, err := Encode(e)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if err := validateAgainst(t, s, b); err != nil {
				t.Errorf("schema rejects %s:\n%s\n%v", e.Type, b, err)
			}
			back, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if back.ID != e.ID || back.Type != e.Type || !back.Time.Equal(e.Time) {
				t.Errorf("round trip changed the event: %+v", back)
			}
		})
	}
}

func TestSchemaRejectsMalformedEvents(t *testing.T) {
	s := compileEventSchema(t)
	good, err := Encode(sampleEvents()[0])
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := map[string][]byte{
		"missing id":          mutate(func(m map[string]any) { delete(m, "id") }),
		"unknown type":        mutate(func(m map[string]any) { m["type"] = "parley.message.exploded" }),
		"id not subject-safe": mutate(func(m map[string]any) { m["id"] = "e_a.b" }),
		"message without message part": mutate(func(m map[string]any) {
			delete(m["data"].(map[string]any), "message")
		}),
		"non-UTC time": mutate(func(m map[string]any) { m["time"] = "2026-11-20T10:30:00+01:00" }),
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := validateAgainst(t, s, doc); err == nil {
				t.Errorf("schema accepted %s", doc)
			}
		})
	}
}

// TestGoldenEventsMatchTheSchema holds every connector's golden inbound
// events to the published schema, so docs and mapping cannot drift apart.
func TestGoldenEventsMatchTheSchema(t *testing.T) {
	s := compileEventSchema(t)
	files, err := filepath.Glob("../connectors/*/testdata/inbound/*.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden inbound files found: the schema test would hold nothing")
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range goldenEvents(t, b) {
			n++
			if err := validateAgainst(t, s, ev); err != nil {
				t.Errorf("%s event %d: %v", f, i, err)
			}
		}
	}
	t.Logf("%d golden events from %d files validated", n, len(files))
}

// goldenEvents extracts events from a golden file: a JSON array of events,
// or an object whose "events" member is one.
func goldenEvents(t *testing.T, b []byte) []json.RawMessage {
	t.Helper()
	var arr []json.RawMessage
	if json.Unmarshal(b, &arr) == nil {
		return arr
	}
	var obj struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		t.Fatalf("golden file is neither an array nor an object with events: %v", err)
	}
	return obj.Events
}
