package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Reply is a reply command: what a helpdesk asks Parley to send into a
// conversation. It is the body of a cmd subject and of POST /v1/replies.
type Reply struct {
	// ID is the helpdesk's idempotency key, [A-Za-z0-9._:-]{1,128}. It is
	// the command's Nats-Msg-Id, so the same id twice is stored once.
	ID             string            `json:"id"`
	ConversationID ConversationID    `json:"conversation_id"`
	Text           string            `json:"text,omitempty"`
	Attachments    []ReplyAttachment `json:"attachments,omitempty"`
	Choices        []Choice          `json:"choices,omitempty"`
	ReplyTo        string            `json:"reply_to,omitempty"`
	HumanAgent     bool              `json:"human_agent,omitempty"`
	NotAfter       *time.Time        `json:"not_after,omitempty"`
}

// ReplyAttachment is a file to send, by URL or by the media id of an inbound
// attachment stored in the region's object store.
type ReplyAttachment struct {
	URL      string  `json:"url,omitempty"`
	MediaID  MediaID `json:"media_id,omitempty"`
	Filename string  `json:"filename,omitempty"`
	Caption  string  `json:"caption,omitempty"`
}

// Choice is a button or quick reply offered with a reply.
type Choice struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// Limits on reply commands that hold for every platform. Platforms have
// tighter limits of their own; text over those is split, not refused.
const (
	MaxReplyTextBytes   = 64 * 1024
	MaxReplyAttachments = 10
	MaxReplyChoices     = 10
	// MaxChoiceIDBytes only bounds a command's size: each platform's
	// tighter limit (Telegram's 64-byte callback_data) is its connector's
	// Plan's to check.
	MaxChoiceIDBytes    = 1000
	MaxChoiceTitleRunes = 64
	MaxReplyBodyBytes   = 256 * 1024
)

var replyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// ValidReplyID reports whether id is a well-formed reply idempotency key.
func ValidReplyID(id string) bool { return replyIDPattern.MatchString(id) }

// InvalidReplyError lists what is wrong with a reply command. It maps to the
// error code invalid_reply.
type InvalidReplyError struct {
	Problems []string
}

func (e *InvalidReplyError) Error() string {
	return "invalid reply: " + strings.Join(e.Problems, "; ")
}

// ParseReply decodes and validates a reply command. Unknown fields are
// ignored (a newer helpdesk may send fields this version does not know).
// A body that is not a JSON object, or that fails validation, returns an
// *InvalidReplyError; it never panics.
func ParseReply(b []byte) (*Reply, error) {
	if len(b) > MaxReplyBodyBytes {
		return nil, &InvalidReplyError{Problems: []string{fmt.Sprintf("body is %d bytes, over %d", len(b), MaxReplyBodyBytes)}}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var r Reply
	if err := dec.Decode(&r); err != nil {
		return nil, &InvalidReplyError{Problems: []string{"body is not a reply object: " + jsonProblem(err)}}
	}
	if dec.More() {
		return nil, &InvalidReplyError{Problems: []string{"body has data after the reply object"}}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s must be %s", te.Field, te.Type)
	}
	return err.Error()
}

// Validate checks a reply command against the rules every platform shares.
func (r *Reply) Validate() error {
	var p []string
	if !ValidReplyID(r.ID) {
		p = append(p, "id: required, [A-Za-z0-9._:-]{1,128}")
	}
	if !ValidID("c_", string(r.ConversationID)) {
		p = append(p, "conversation_id: required, a conversation id (c_…)")
	}
	if r.Text == "" && len(r.Attachments) == 0 {
		p = append(p, "text or attachments: one is required")
	}
	if !utf8.ValidString(r.Text) {
		p = append(p, "text: not valid UTF-8")
	}
	if len(r.Text) > MaxReplyTextBytes {
		p = append(p, fmt.Sprintf("text: over %d bytes", MaxReplyTextBytes))
	}
	if len(r.Attachments) > MaxReplyAttachments {
		p = append(p, fmt.Sprintf("attachments: at most %d", MaxReplyAttachments))
	}
	for i, a := range r.Attachments {
		switch {
		case a.URL == "" && a.MediaID == "":
			p = append(p, fmt.Sprintf("attachments[%d]: url or media_id is required", i))
		case a.URL != "" && a.MediaID != "":
			p = append(p, fmt.Sprintf("attachments[%d]: url and media_id are exclusive", i))
		case a.URL != "":
			u, err := url.Parse(a.URL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				p = append(p, fmt.Sprintf("attachments[%d].url: must be an absolute http(s) URL", i))
			}
		default:
			if !ValidID("m_", string(a.MediaID)) {
				p = append(p, fmt.Sprintf("attachments[%d].media_id: not a media id", i))
			}
		}
	}
	if len(r.Choices) > MaxReplyChoices {
		p = append(p, fmt.Sprintf("choices: at most %d", MaxReplyChoices))
	}
	seen := map[string]bool{}
	for i, c := range r.Choices {
		if c.ID == "" || len(c.ID) > MaxChoiceIDBytes {
			p = append(p, fmt.Sprintf("choices[%d].id: required, at most %d bytes", i, MaxChoiceIDBytes))
		}
		if seen[c.ID] {
			p = append(p, fmt.Sprintf("choices[%d].id: duplicate %q", i, c.ID))
		}
		seen[c.ID] = true
		if strings.TrimSpace(c.Title) == "" || utf8.RuneCountInString(c.Title) > MaxChoiceTitleRunes {
			p = append(p, fmt.Sprintf("choices[%d].title: required, at most %d characters", i, MaxChoiceTitleRunes))
		}
	}
	if len(p) > 0 {
		return &InvalidReplyError{Problems: p}
	}
	return nil
}
