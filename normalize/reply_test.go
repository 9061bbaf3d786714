package normalize

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		file      string
		wantValid bool
		wantIn    string // a problem the error must mention
	}{
		{"text.json", true, ""},
		{"full.json", true, ""},
		{"invalid_missing_id.json", false, "id: required"},
		{"invalid_types.json", false, "body is not a reply object"},
		{"invalid_choices.json", false, "choices[0].title"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".json"), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "replies", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseReply(b)
			if tt.wantValid {
				if err != nil {
					t.Fatalf("ParseReply: %v", err)
				}
				if r.ID == "" || r.ConversationID == "" {
					t.Fatalf("parsed reply lost fields: %+v", r)
				}
				return
			}
			var inv *InvalidReplyError
			if !errors.As(err, &inv) {
				t.Fatalf("want *InvalidReplyError, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not mention %q", err, tt.wantIn)
			}
		})
	}
}

func TestReplyValidationRules(t *testing.T) {
	ok := Reply{ID: "r-1", ConversationID: "c_AbCdEfGhIjKlMnOpQrStUvWx", Text: "hi"}
	tests := []struct {
		name   string
		mutate func(r *Reply)
		want   string
	}{
		{"accepts a plain text reply", func(r *Reply) {}, ""},
		{"rejects an id with spaces", func(r *Reply) { r.ID = "a b" }, "id:"},
		{"rejects an id over 128 characters", func(r *Reply) { r.ID = strings.Repeat("x", 129) }, "id:"},
		{"rejects a conversation that is not a conversation id", func(r *Reply) { r.ConversationID = "42" }, "conversation_id"},
		{"rejects a reply with neither text nor attachments", func(r *Reply) { r.Text = "" }, "text or attachments"},
		{"accepts attachments without text", func(r *Reply) {
			r.Text = ""
			r.Attachments = []ReplyAttachment{{URL: "https://example.com/a.png"}}
		}, ""},
		{"rejects a non-http attachment url", func(r *Reply) { r.Attachments = []ReplyAttachment{{URL: "file:///etc/passwd"}} }, "attachments[0].url"},
		{"rejects url and media_id together", func(r *Reply) {
			r.Attachments = []ReplyAttachment{{URL: "https://e.com/x", MediaID: "m_x"}}
		}, "exclusive"},
		{"rejects a choice id over MaxChoiceIDBytes", func(r *Reply) {
			r.Choices = []Choice{{ID: strings.Repeat("y", MaxChoiceIDBytes+1), Title: "Y"}}
		}, "choices[0].id"},
		{"rejects duplicate choice ids", func(r *Reply) {
			r.Choices = []Choice{{ID: "a", Title: "A"}, {ID: "a", Title: "B"}}
		}, "duplicate"},
		{"rejects invalid UTF-8 text", func(r *Reply) { r.Text = "\xff" }, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mutate(&r)
			err := r.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want a problem mentioning %q", err, tt.want)
			}
		})
	}
}

// FuzzParseReply: the reply command parser never panics, and whatever it
// accepts is valid and survives a JSON round trip.
func FuzzParseReply(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "replies", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{"id":"x","conversation_id":"c_a","text":"a"} trailing`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReply(b)
		if err != nil {
			var inv *InvalidReplyError
			if !errors.As(err, &inv) {
				t.Fatalf("error is not an *InvalidReplyError: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted reply fails Validate: %v", err)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseReply(out); err != nil {
			t.Fatalf("re-encoded reply no longer parses: %v", err)
		}
	})
}
