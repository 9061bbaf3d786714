// Package media moves inbound attachments' bytes from the platform into the
// region's object store, after their message event is stored, and announces
// the outcome with parley.media.stored or parley.media.failed.
//
// The ingest side enqueues one Job per attachment on the region's media work
// queue (PARLEY_MEDIA_<R>) in the same publish as the message event; a
// Worker per region consumes them. Invariants:
//
//   - A message is never held back by its media: the job is durable and the
//     download happens later, on any instance serving the region.
//   - Every job ends in exactly one announcement per media id (stored or
//     failed); its event id derives from the media id and the outcome, so a
//     redelivered job re-announces under the same Nats-Msg-Id and JetStream
//     drops the repeat.
//   - Bytes are streamed, never held in memory whole: the object is written
//     as it is downloaded, its SHA-256 and size computed on the way.
//   - The object's name is the media id, so an attachment that is already
//     stored (a redelivered job, an edit of the same message) is announced
//     again without a second download.
package media

import (
	"strconv"
	"time"

	"github.com/parley-gateway/parley/normalize"
)

// Job is one attachment to fetch. It is the JSON body of a message on the
// media subject <prefix>.media.<region>.<platform>.<connector>.<conv>, with
// Nats-Msg-Id "media:<event id>:<attachment index>".
type Job struct {
	MediaID         normalize.MediaID        `json:"media_id"`
	FetchRef        string                   `json:"fetch_ref"` // the connector's handle, for FetchMedia
	AttachmentIndex int                      `json:"attachment_index"`
	Kind            normalize.AttachmentKind `json:"kind"`
	MimeType        string                   `json:"mime_type"`
	Size            int64                    `json:"size"`
	Filename        string                   `json:"filename"`

	// The message the attachment came with.
	MessageID      string                   `json:"message_platform_id"`
	EventID        normalize.EventID        `json:"event_id"`
	ConversationID normalize.ConversationID `json:"conversation_id"`
	Time           time.Time                `json:"time"` // the message's time on the platform

	Region    string `json:"region"`
	Platform  string `json:"platform"`
	Connector string `json:"connector"`

	// Conversation and Sender are copied into the media event, so a helpdesk
	// can route it like the message.
	Conversation *normalize.Conversation `json:"conversation,omitempty"`
	Sender       *normalize.Sender       `json:"sender,omitempty"`

	// Unavailable, when set, is why the bytes cannot be fetched at all
	// (over the platform's download limit, say): the worker announces
	// media.failed with it at once, without calling the connector.
	Unavailable string `json:"unavailable,omitempty"`
}

// JobMsgID is the Nats-Msg-Id of the job of attachment index of event id.
func JobMsgID(id normalize.EventID, index int) string {
	return "media:" + string(id) + ":" + strconv.Itoa(index)
}

// StoredEventID is the id of the media.stored event of a media id.
func StoredEventID(id normalize.MediaID) normalize.EventID {
	return normalize.NewEventID("parley", string(id), "stored")
}

// FailedEventID is the id of the media.failed event of a media id.
func FailedEventID(id normalize.MediaID) normalize.EventID {
	return normalize.NewEventID("parley", string(id), "failed")
}
