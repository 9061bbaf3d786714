package meta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Objects of a webhook envelope.
const (
	ObjectPage      = "page"
	ObjectInstagram = "instagram"
)

// Envelope is one webhook POST: events for one or more accounts (Pages,
// Instagram professional accounts), each entry with its own events.
type Envelope struct {
	Object string  `json:"object"`
	Entry  []Entry `json:"entry"`
}

// Entry is one account's part of an envelope. Messaging holds the events
// for the app in control of the conversation; Standby those seen while
// another app (a handover) is.
type Entry struct {
	ID        string      `json:"id"`   // the Page or Instagram account id
	Time      int64       `json:"time"` // ms
	Messaging []Messaging `json:"messaging"`
	Standby   []Messaging `json:"standby"`
}

// Messaging is one event. Exactly one of its event fields is set for a
// well-formed event; Kind says which.
type Messaging struct {
	Sender      Party        `json:"sender"`
	Recipient   Party        `json:"recipient"`
	Timestamp   int64        `json:"timestamp"` // ms
	Message     *Message     `json:"message,omitempty"`
	Postback    *Postback    `json:"postback,omitempty"`
	Reaction    *Reaction    `json:"reaction,omitempty"`
	Read        *Read        `json:"read,omitempty"`
	Delivery    *Delivery    `json:"delivery,omitempty"`
	MessageEdit *MessageEdit `json:"message_edit,omitempty"`
	Referral    *Referral    `json:"referral,omitempty"`
}

// Party is a sender or recipient: a PSID, an IGSID or an account id.
type Party struct {
	ID string `json:"id"`
}

// Message is a message, an echo of one sent by the account, or an unsend.
type Message struct {
	MID           string       `json:"mid"`
	Text          string       `json:"text,omitempty"`
	IsEcho        bool         `json:"is_echo,omitempty"`
	AppID         json.Number  `json:"app_id,omitempty"`
	Metadata      string       `json:"metadata,omitempty"`
	IsDeleted     bool         `json:"is_deleted,omitempty"`
	IsUnsupported bool         `json:"is_unsupported,omitempty"`
	QuickReply    *QuickReply  `json:"quick_reply,omitempty"`
	ReplyTo       *ReplyTo     `json:"reply_to,omitempty"`
	Attachments   []Attachment `json:"attachments,omitempty"`
	StickerID     json.Number  `json:"sticker_id,omitempty"`
	Referral      *Referral    `json:"referral,omitempty"`
}

// QuickReply is the payload of a quick reply the customer tapped.
type QuickReply struct {
	Payload string `json:"payload"`
}

// ReplyTo is what a message answers: another message, or (Instagram) a
// story.
type ReplyTo struct {
	MID         string `json:"mid,omitempty"`
	IsSelfReply bool   `json:"is_self_reply,omitempty"`
	Story       *Story `json:"story,omitempty"`
}

// Story is an Instagram story a message replies to.
type Story struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// Attachment is one attachment; Payload.URL is a signed CDN URL that
// expires (hours to days; Instagram story media about a day).
type Attachment struct {
	Type    string            `json:"type"`
	Payload AttachmentPayload `json:"payload"`
}

// AttachmentPayload is an attachment's content reference.
type AttachmentPayload struct {
	URL         string       `json:"url,omitempty"`
	Title       string       `json:"title,omitempty"`
	StickerID   json.Number  `json:"sticker_id,omitempty"`
	Coordinates *Coordinates `json:"coordinates,omitempty"`
}

// Coordinates of a (legacy) location attachment.
type Coordinates struct {
	Lat  float64 `json:"lat"`
	Long float64 `json:"long"`
}

// Postback is a button press: Get Started, a menu item, a template button.
type Postback struct {
	MID      string    `json:"mid,omitempty"`
	Title    string    `json:"title"`
	Payload  string    `json:"payload"`
	Referral *Referral `json:"referral,omitempty"`
}

// Reaction is a reaction added ("react") or removed ("unreact") on the
// message MID.
type Reaction struct {
	MID      string `json:"mid"`
	Action   string `json:"action"`
	Reaction string `json:"reaction,omitempty"`
	Emoji    string `json:"emoji,omitempty"`
}

// Read says the customer read messages: every one the account sent before
// Watermark (Messenger, ms), or the message MID (Instagram).
type Read struct {
	Watermark int64  `json:"watermark,omitempty"`
	MID       string `json:"mid,omitempty"`
}

// Delivery says messages were delivered: MIDs (may be missing) and every
// one before Watermark (ms).
type Delivery struct {
	MIDs      []string `json:"mids,omitempty"`
	Watermark int64    `json:"watermark"`
}

// MessageEdit is a customer's edit of an earlier message.
type MessageEdit struct {
	MID     string `json:"mid"`
	Text    string `json:"text"`
	NumEdit int    `json:"num_edit"`
}

// Referral is how a customer arrived (an ad, an m.me link, a QR code).
type Referral struct {
	Ref    string `json:"ref,omitempty"`
	Source string `json:"source,omitempty"`
	Type   string `json:"type,omitempty"`
	AdID   string `json:"ad_id,omitempty"`
}

// Event kinds, as Kind names them.
const (
	KindMessage  = "message"
	KindEcho     = "echo"
	KindDeleted  = "deleted"
	KindPostback = "postback"
	KindReaction = "reaction"
	KindRead     = "read"
	KindDelivery = "delivery"
	KindEdit     = "edit"
	KindReferral = "referral"
	KindUnknown  = ""
)

// Kind is which event m is; KindUnknown for none a connector maps (an
// optin, a policy notice, a handover).
func (m *Messaging) Kind() string {
	switch {
	case m.Message != nil && m.Message.IsDeleted:
		return KindDeleted
	case m.Message != nil && m.Message.IsEcho:
		return KindEcho
	case m.Message != nil:
		return KindMessage
	case m.Postback != nil:
		return KindPostback
	case m.Reaction != nil:
		return KindReaction
	case m.Read != nil:
		return KindRead
	case m.Delivery != nil:
		return KindDelivery
	case m.MessageEdit != nil:
		return KindEdit
	case m.Referral != nil:
		return KindReferral
	}
	return KindUnknown
}

// ErrMalformed is wrapped by every ParseEnvelope error: the body is not a
// webhook envelope (answer 400).
var ErrMalformed = errors.New("meta: malformed webhook body")

// MaxEntries bounds the entries of one envelope (Meta batches up to 1,000).
const MaxEntries = 1000

// ParseEnvelope decodes a webhook body. It requires a known object and
// at least one entry with an id; events it cannot place are the
// connector's to count, not an error here.
func ParseEnvelope(body []byte) (*Envelope, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	switch env.Object {
	case ObjectPage, ObjectInstagram:
	case "":
		return nil, fmt.Errorf("%w: no object", ErrMalformed)
	default:
		return nil, fmt.Errorf("%w: object %q is not page or instagram", ErrMalformed, env.Object)
	}
	if len(env.Entry) == 0 {
		return nil, fmt.Errorf("%w: no entry", ErrMalformed)
	}
	if len(env.Entry) > MaxEntries {
		return nil, fmt.Errorf("%w: %d entries, at most %d", ErrMalformed, len(env.Entry), MaxEntries)
	}
	for i, e := range env.Entry {
		if e.ID == "" {
			return nil, fmt.Errorf("%w: entry %d has no id", ErrMalformed, i)
		}
	}
	return &env, nil
}
