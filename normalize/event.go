package normalize

import (
	"time"
)

// Type is a canonical event type (the CloudEvents "type" attribute).
type Type string

// The event types of CONTRACT §5.
const (
	TypeMessageReceived  Type = "parley.message.received"
	TypeMessageEdited    Type = "parley.message.edited"
	TypeMessageDeleted   Type = "parley.message.deleted"
	TypeMessageEcho      Type = "parley.message.echo"
	TypePostbackReceived Type = "parley.postback.received"
	TypeReactionAdded    Type = "parley.reaction.added"
	TypeReactionRemoved  Type = "parley.reaction.removed"
	TypeReceiptDelivered Type = "parley.receipt.delivered"
	TypeReceiptRead      Type = "parley.receipt.read"
	TypeReplySent        Type = "parley.reply.sent"
	TypeReplyFailed      Type = "parley.reply.failed"
	TypeMediaStored      Type = "parley.media.stored"
	TypeMediaFailed      Type = "parley.media.failed"
	TypeConnectorState   Type = "parley.connector.state"
)

// Types lists every event type, in a stable order.
var Types = []Type{
	TypeMessageReceived, TypeMessageEdited, TypeMessageDeleted, TypeMessageEcho,
	TypePostbackReceived, TypeReactionAdded, TypeReactionRemoved,
	TypeReceiptDelivered, TypeReceiptRead, TypeReplySent, TypeReplyFailed,
	TypeMediaStored, TypeMediaFailed, TypeConnectorState,
}

// Kind is the last token of an event subject: which part of data the event fills.
func (t Type) Kind() string {
	switch t {
	case TypeMessageReceived, TypeMessageEdited, TypeMessageDeleted, TypeMessageEcho, TypePostbackReceived:
		return "message"
	case TypeReactionAdded, TypeReactionRemoved:
		return "reaction"
	case TypeReceiptDelivered, TypeReceiptRead:
		return "receipt"
	case TypeReplySent, TypeReplyFailed:
		return "status"
	case TypeMediaStored, TypeMediaFailed:
		return "media"
	case TypeConnectorState:
		return "connector"
	}
	return ""
}

// Event is one canonical conversation event. It encodes as a CloudEvents 1.0
// structured-mode JSON document (see Encode).
type Event struct {
	ID      EventID        `json:"id"`
	Source  string         `json:"source"`  // "parley:<region>:<platform>:<connector>"
	Type    Type           `json:"type"`    // one of Types
	Subject ConversationID `json:"subject"` // empty for connector-level events
	Time    time.Time      `json:"time"`    // when it happened on the platform
	Data    Data           `json:"data"`
}

// Data is the "data" member of an event. Exactly one of Message, Reaction,
// Receipt, Reply, Media or Connector is set, matching the event type.
type Data struct {
	Region       string        `json:"region"`
	Platform     string        `json:"platform"`
	Connector    string        `json:"connector"`
	Conversation *Conversation `json:"conversation,omitempty"`
	Sender       *Sender       `json:"sender,omitempty"`

	Message  *Message        `json:"message,omitempty"`
	Reaction *Reaction       `json:"reaction,omitempty"`
	Receipt  *Receipt        `json:"receipt,omitempty"`
	Reply    *ReplyStatus    `json:"reply,omitempty"`
	Media    *MediaStatus    `json:"media,omitempty"`
	State    *ConnectorState `json:"connector_state,omitempty"`

	ReceivedAt      time.Time  `json:"received_at"`
	WindowExpiresAt *time.Time `json:"window_expires_at"`

	// Account is the platform account the event arrived on (a bot id, a
	// page id, a phone number id). It is recorded in the conversation
	// directory for replies and never published: ids already derive from it.
	Account string `json:"-"`
}

// ConversationKind says what kind of chat a conversation is.
type ConversationKind string

// Conversation kinds.
const (
	KindDirect  ConversationKind = "direct"
	KindGroup   ConversationKind = "group"
	KindChannel ConversationKind = "channel"
	KindThread  ConversationKind = "thread"
)

// Conversation describes the chat an event belongs to.
type Conversation struct {
	ID         ConversationID   `json:"id"`
	PlatformID string           `json:"platform_id"`
	Kind       ConversationKind `json:"kind"`
	Title      string           `json:"title"`
	ThreadID   string           `json:"thread_id"`
}

// Sender is who caused the event on the platform.
type Sender struct {
	ID         SenderID `json:"id"`
	PlatformID string   `json:"platform_id"`
	Name       string   `json:"name"`
	Username   string   `json:"username"`
	Phone      string   `json:"phone"`
	Language   string   `json:"language"`
	IsBusiness bool     `json:"is_business"`
}

// Message is the message part of message.* and postback events.
type Message struct {
	PlatformID  string       `json:"platform_id"`
	Text        string       `json:"text"`
	ReplyTo     string       `json:"reply_to"`
	Attachments []Attachment `json:"attachments"`
	Location    *Location    `json:"location"`
	Contacts    []Contact    `json:"contacts"`
	Postback    *Postback    `json:"postback"`
	EditedAt    *time.Time   `json:"edited_at,omitempty"`
}

// AttachmentKind is the kind of an attachment.
type AttachmentKind string

// Attachment kinds.
const (
	AttachImage   AttachmentKind = "image"
	AttachVideo   AttachmentKind = "video"
	AttachAudio   AttachmentKind = "audio"
	AttachVoice   AttachmentKind = "voice"
	AttachFile    AttachmentKind = "file"
	AttachSticker AttachmentKind = "sticker"
)

// MediaState is where an attachment's bytes are.
type MediaState string

// Media states.
const (
	MediaPending     MediaState = "pending"
	MediaStored      MediaState = "stored"
	MediaUnavailable MediaState = "unavailable"
)

// Attachment is one inbound file. Its bytes never travel in the event: they
// are fetched after the event is stored and announced by media.stored.
type Attachment struct {
	Kind       AttachmentKind `json:"kind"`
	MediaID    MediaID        `json:"media_id"`
	MimeType   string         `json:"mime_type"`
	Size       int64          `json:"size"`
	Filename   string         `json:"filename"`
	Caption    string         `json:"caption"`
	Width      int            `json:"width"`
	Height     int            `json:"height"`
	DurationMS int64          `json:"duration_ms"`
	Status     MediaState     `json:"status"`

	// FetchRef is the connector's private handle to download the bytes (a
	// Telegram file_id, a Graph media id). It is carried to the media job,
	// never into the published event.
	FetchRef string `json:"-"`
	// UnavailableReason says why Status is unavailable when known before
	// any fetch (e.g. over the platform's download limit).
	UnavailableReason string `json:"-"`
}

// Location is a shared point.
type Location struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	AccuracyM float64 `json:"accuracy_m,omitempty"`
	Name      string  `json:"name,omitempty"`
	Address   string  `json:"address,omitempty"`
}

// Contact is a shared contact card.
type Contact struct {
	Name       string `json:"name"`
	Phone      string `json:"phone"`
	PlatformID string `json:"platform_id,omitempty"`
	VCard      string `json:"vcard,omitempty"`
}

// Postback is a button press, quick reply or callback.
type Postback struct {
	ID      string `json:"id"`      // the choice id (callback data)
	Title   string `json:"title"`   // the button's label when known
	Payload string `json:"payload"` // the raw platform payload
}

// Reaction is the part of reaction.* events.
type Reaction struct {
	TargetPlatformID string `json:"target_platform_id"`
	Emoji            string `json:"emoji"`
}

// Receipt is the part of receipt.* events.
type Receipt struct {
	PlatformIDs []string   `json:"platform_ids"`
	Watermark   *time.Time `json:"watermark"`
	ReplyIDs    []string   `json:"reply_ids"`
}

// ReplyStatus is the part of reply.sent and reply.failed events.
type ReplyStatus struct {
	ID          string      `json:"id"`
	Attempts    int         `json:"attempts"`
	PlatformIDs []string    `json:"platform_ids"`
	Error       *ReplyError `json:"error"`
	// Late marks a reply.failed the platform reported after the send call
	// had succeeded (the reply's reply.sent came first): at most one per
	// reply, added to its outcome, never replacing it.
	Late bool `json:"late,omitempty"`
}

// ReplyError says why a reply failed. Code is one of the ErrorCode values.
type ReplyError struct {
	Code         ErrorCode `json:"code"`
	Message      string    `json:"message"`
	PlatformCode string    `json:"platform_code"`
	Attempts     int       `json:"attempts"`
}

// ErrorCode classifies a failed reply for helpdesks.
type ErrorCode string

// Reply error codes (CONTRACT §5).
const (
	ErrInvalidReply         ErrorCode = "invalid_reply"
	ErrUnknownConversation  ErrorCode = "unknown_conversation"
	ErrWindowClosed         ErrorCode = "window_closed"
	ErrRecipientUnavailable ErrorCode = "recipient_unavailable"
	ErrUnauthorized         ErrorCode = "unauthorized"
	ErrTooLarge             ErrorCode = "too_large"
	ErrUnsupported          ErrorCode = "unsupported"
	ErrRateLimited          ErrorCode = "rate_limited"
	ErrExpired              ErrorCode = "expired"
	ErrPlatformError        ErrorCode = "platform_error"
)

// MediaStatus is the part of media.* events.
type MediaStatus struct {
	ID              MediaID `json:"id"`
	AttachmentIndex int     `json:"attachment_index"`
	MessageID       string  `json:"message_platform_id"`
	MimeType        string  `json:"mime_type"`
	Size            int64   `json:"size"`
	SHA256          string  `json:"sha256"`
	Error           string  `json:"error,omitempty"`
}

// State is a connector's lifecycle state.
type State string

// Connector states.
const (
	StateStarting       State = "starting"
	StateRunning        State = "running"
	StateDegraded       State = "degraded"
	StateLoggedOut      State = "logged_out"
	StateBadCredentials State = "bad_credentials"
	StateStopped        State = "stopped"
)

// ConnectorState is the part of connector.state events.
type ConnectorState struct {
	State  State  `json:"state"`
	Reason string `json:"reason"`
	Action string `json:"action"`
}
