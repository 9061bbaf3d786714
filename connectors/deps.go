package connectors

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/parley-gateway/parley/normalize"
)

// Deps is what Parley hands a connector. Every field is set.
type Deps struct {
	ID       string // connector id from the config
	Platform string
	Region   string

	Logger        *slog.Logger // already scoped with connector, platform, region
	Publisher     Publisher
	Rejects       Rejects
	Cursors       Store
	Conversations Conversations
	Ledger        Ledger
	Media         MediaStore
	HTTPClient    *http.Client // for platform API calls
	PublicURL     string       // external base URL, "" when none; webhooks are at PublicURL + "/webhooks/" + ID
	// DataDir is the connector's own directory under the configured
	// data_dir (WhatsApp device stores). It may not exist yet: a connector
	// that needs it creates it, in Run or Pair, never in New.
	DataDir string
	Now     func() time.Time

	// OnHealth is called on every health change; the supervisor publishes
	// it as a parley.connector.state event. Use kit.Health.
	OnHealth func(Health)
}

// Publisher stores canonical events durably.
type Publisher interface {
	// Publish returns nil only when every event is stored in JetStream (or
	// was already stored: a redelivered event has the same id and is
	// dropped as a duplicate). None of the events may be acknowledged to
	// the platform otherwise. The error wraps ErrNotDurable when storage is
	// unavailable (retry later) and ErrRefused when the server refused an
	// event for good (retrying the same event cannot help: dead-letter the
	// update through Rejects).
	Publish(ctx context.Context, events ...*normalize.Event) error
}

// Prober is implemented by Publishers that can tell, without storing
// anything, whether events could be stored right now. A webhook connector
// has no traffic of its own to prove that storage is back after an outage,
// so while it reports storage trouble it probes (kit.Health does), and
// reports running again as soon as a probe succeeds.
type Prober interface {
	Probe(ctx context.Context) error
}

// Rejects keeps platform updates that were acknowledged but could not be
// stored as events, on the region's inbound dead-letter subject.
type Rejects interface {
	// Reject stores raw (cut to a bound; the original size is kept) with
	// the reason. It returns nil once the update is kept, or an error
	// wrapping ErrNotDurable: then the platform must not be acknowledged.
	// Rejecting the same bytes again keeps them once.
	Reject(ctx context.Context, r Rejected) error
}

// Rejected is one update for Rejects.
type Rejected struct {
	Raw []byte
	// Reason is RejectRefused or RejectUnmappable.
	Reason string
	// Detail says what went wrong, in a sentence; never a secret.
	Detail string
	// UpdateID is the platform's id of the update, when known, for logs.
	UpdateID string
}

// Reasons of Rejected.
const (
	RejectRefused    = "refused"    // the server refused the events (too large, say)
	RejectUnmappable = "unmappable" // the connector cannot turn the update into events
)

// ErrNotDurable marks a failure to store events; webhooks answer 503 and
// pollers keep their cursor so the platform delivers again.
var ErrNotDurable = errors.New("not durable")

// ErrRefused marks events the server will never store (over its max
// payload, say): the update is dead-lettered and acknowledged.
var ErrRefused = errors.New("refused by the server")

// ErrNotFound is returned by Store.Get for a key that was never written,
// by Ledger lookups for a message Parley did not send, and by
// MediaStore.OpenMedia for media that is not stored.
var ErrNotFound = errors.New("not found")

// Store keeps a connector's small durable state (poll cursors), scoped to
// the connector: keys of different connectors never collide.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
}

// Conversations lets a connector record what inbound traffic teaches about
// a conversation outside of messages, such as the bot being blocked.
type Conversations interface {
	// SetReachable records whether replies can reach the conversation; an
	// unreachable one fails fast with recipient_unavailable until it is
	// reachable again.
	SetReachable(ctx context.Context, id normalize.ConversationID, reachable bool, reason string) error
}

// Ledger is the record of every platform message Parley sent: the outbox
// writes it as each part is sent, in the region's ledger bucket, where it is
// kept for the ledger's TTL (30 days by default). A connector reads it to
// tell what the platform later says about those messages. Lookups see only
// the connector's own sends.
type Ledger interface {
	// Sent returns the part Parley sent as platformID, or an error wrapping
	// ErrNotFound when Parley did not send it (or the record expired): an
	// echo that is not found was sent outside Parley.
	Sent(ctx context.Context, platformID string) (SentMessage, error)

	// SentUntil returns what Parley sent to a conversation at or before t,
	// oldest first, for receipts that name a watermark instead of
	// messages. It returns at most the latest MaxLedgerList entries.
	SentUntil(ctx context.Context, conv normalize.ConversationID, t time.Time) ([]SentMessage, error)

	// ReportLateFailure publishes one parley.reply.failed with
	// data.reply.late true for the reply m belongs to, on its
	// conversation's status subject: the platform failed the message after
	// the send call had succeeded. It publishes at most once per reply, so
	// a repeated status webhook publishes nothing new. It returns an error
	// wrapping ErrNotDurable when the failure cannot be stored now.
	ReportLateFailure(ctx context.Context, m SentMessage, failure normalize.ReplyError) error
}

// MaxLedgerList bounds Ledger.SentUntil.
const MaxLedgerList = 100

// SentMessage is one part of a reply as the ledger recorded it.
type SentMessage struct {
	PlatformID     string
	ReplyID        string
	Part           int // index of the part in the reply's plan, from 0
	ConversationID normalize.ConversationID
	SentAt         time.Time
}

// MediaStore opens inbound media Parley stored, for replies that send a
// stored file back (reply attachments by media_id). It sees only the
// connector's own region: media stays in the region it was received in.
type MediaStore interface {
	// OpenMedia streams the stored bytes of id; the caller closes the
	// reader. MediaInfo carries the stored content type, size and file
	// name. The error wraps ErrNotFound when no such media is stored (never
	// received, malformed id, or expired); any other error is storage
	// trouble that may pass.
	OpenMedia(ctx context.Context, id normalize.MediaID) (io.ReadCloser, MediaInfo, error)
}

// MediaInfo describes fetched media bytes.
type MediaInfo struct {
	MimeType string
	Size     int64 // -1 when unknown
	Filename string
}
