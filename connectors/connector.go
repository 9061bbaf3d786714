// Package connectors defines the contract between Parley and one platform
// account: how a connector is described, constructed, run, asked to send,
// and how it reports health and classifies failures. Each platform lives in
// its own folder (connectors/telegram, ...) with its simulator beside it;
// connectors/registry lists them, and connectors/connectortest is the
// conformance suite every connector runs.
//
// # Transports
//
// Every transport a platform offers maps onto the same two duties — store
// first, acknowledge after — through Deps.Publisher, which returns only when
// every event is durable in JetStream:
//
//   - Signed webhooks (Telegram webhook mode, Meta's Messenger, Instagram and
//     WhatsApp Cloud, the Slack Events API): the connector implements
//     WebhookConnector. Its handler verifies the signature (401), parses (400),
//     publishes every event of the request — Meta batches many events for
//     many pages in one POST — and answers 200 only after Publish returned
//     nil; a Publish error wrapping ErrNotDurable answers 503 so the platform
//     retries, and deterministic event ids make the retry a no-op in
//     JetStream. One webhook connector serves every account listed in its
//     settings (Meta pages, numbers), so the account is part of every id.
//   - Long polling with a cursor (Telegram getUpdates): Run polls, publishes
//     the whole batch, and only then saves the cursor through Deps.Cursors.
//     Only one poller may hold a token, so the connector implements
//     Exclusive and runs only while its instance holds the lease.
//   - Sockets that acknowledge each event (whatsmeow with SynchronousAck,
//     Slack Socket Mode): Run keeps the socket and acknowledges each event's
//     envelope (or returns whatsmeow's success status) only after Publish
//     returned nil. A device session is exclusive, as above.
//
// Outbound, the outbox owns ordering, pacing, retries and dead-lettering; a
// connector only renders (Plan, pure) and performs one platform call per
// part (SendPart), classifying its failure with the error constructors of
// this package.
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

// Connector is one platform account served by Parley.
//
// Lifecycle: New (in the Descriptor) decodes and validates settings and does
// no I/O; Run does the I/O. Plan and SendPart may be called before Run has
// started and while it runs, concurrently from many goroutines.
type Connector interface {
	// Run connects and receives until ctx ends, publishing every inbound
	// event through Deps.Publisher and acknowledging the platform only
	// after Publish returned nil. Transient trouble (platform outage, NATS
	// outage) is retried inside Run and shown through Health. Run returns
	// nil when ctx ends, with every goroutine it started finished, and a
	// non-nil error only when it cannot go on (revoked token, logged-out
	// device); the supervisor then reports the connector's state and
	// restarts it with backoff.
	Run(ctx context.Context) error

	// Health returns the last known state without doing I/O.
	Health() Health

	// Plan renders a canonical reply into the platform messages it takes,
	// in the order they must be sent (text split at natural boundaries,
	// one message per attachment...). It is pure and deterministic: the
	// outbox calls it again on every attempt and relies on part i being
	// the same part each time, so it can skip parts already sent. An error
	// is permanent (use Permanent with ErrUnsupported or ErrTooLarge).
	Plan(reply *normalize.Reply, to Address) ([]Part, error)

	// SendPart performs exactly one platform call for one part, without
	// retrying. Errors are classified with Permanent, RetryAfter or
	// Transient; an unclassified error counts as transient.
	SendPart(ctx context.Context, to Address, part Part) (SentPart, error)
}

// Part is one platform message of a planned reply. Its concrete type is the
// connector's own; only the connector that planned it reads it.
type Part any

// SentPart is what the platform answered for one part.
type SentPart struct {
	PlatformID string // the platform's id of the sent message
}

// Address is where a reply goes: the conversation as the directory recorded
// it from inbound traffic.
type Address struct {
	ConversationID normalize.ConversationID
	Kind           normalize.ConversationKind
	PlatformID     string // the platform's chat id (Telegram chat_id, Slack channel, PSID...)
	ThreadID       string // topic or thread within the chat, if any
	Account        string // the platform account (bot id, page id, phone number id)
}

// Health is a connector's state as operators see it in /readyz and in
// parley.connector.state events.
type Health struct {
	State  normalize.State
	Reason string    // why, in a sentence; never a secret
	Action string    // what an operator should do, if anything
	Since  time.Time // when State last changed
}

// Publisher stores canonical events durably.
type Publisher interface {
	// Publish returns nil only when every event is stored in JetStream (or
	// was already stored: a redelivered event has the same id and is
	// dropped as a duplicate). On failure the error wraps ErrNotDurable
	// and none of the events may be acknowledged to the platform.
	Publish(ctx context.Context, events ...*normalize.Event) error
}

// Prober is implemented by Publishers that can tell, without storing
// anything, whether events could be stored right now. A webhook connector
// has no traffic of its own to prove that storage is back after an outage,
// so while it reports storage trouble it probes, and reports running again
// as soon as a probe succeeds.
type Prober interface {
	Probe(ctx context.Context) error
}

// ErrNotDurable marks a failure to store events; webhooks answer 503 and
// pollers keep their cursor so the platform delivers again.
var ErrNotDurable = errors.New("not durable")

// ErrNotFound is returned by Store.Get for a key that was never written,
// and by MediaStore.OpenMedia for media that is not stored.
var ErrNotFound = errors.New("not found")

// Store keeps a connector's small durable state (poll cursors), scoped to
// the connector: keys of different connectors never collide.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
}

// Conversations lets a connector record what it learns about a
// conversation outside of messages, such as the bot being blocked.
type Conversations interface {
	// SetReachable records whether replies can reach the conversation; an
	// unreachable one fails fast with recipient_unavailable until it is
	// reachable again.
	SetReachable(ctx context.Context, id normalize.ConversationID, reachable bool, reason string) error
}

// Deps is what Parley hands a connector. Every field is set, Media
// included.
type Deps struct {
	ID       string // connector id from the config
	Platform string
	Region   string

	Logger        *slog.Logger // already scoped with connector, platform, region
	Publisher     Publisher
	Cursors       Store
	Conversations Conversations
	Media         MediaStore
	HTTPClient    *http.Client // for platform API calls
	PublicURL     string       // external base URL, "" when none; webhooks are at PublicURL + "/webhooks/" + ID
	Now           func() time.Time

	// OnHealth is called on every health change; the supervisor publishes
	// it as a parley.connector.state event. Use HealthTracker.
	OnHealth func(Health)
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

// Settings is a connector's own configuration block, still undecoded.
type Settings interface {
	// DecodeSettings decodes the block strictly into v: unknown keys are
	// an error.
	DecodeSettings(v any) error
}

// Descriptor describes one platform's connector to the registry.
type Descriptor struct {
	Platform string // "telegram"; the config's platform value and block name
	Name     string // "Telegram", for people

	// New decodes and validates settings and returns a connector. It does
	// no I/O. Errors describe the setting at fault, relative to the
	// platform block ("token: required").
	New func(deps Deps, settings Settings) (Connector, error)

	// Validate checks settings without building a connector (config check).
	// Each problem is a path relative to the platform block and a message.
	Validate func(settings Settings) []Problem

	// Sample is a commented YAML sample of the platform block.
	Sample string

	Limits Limits
}

// Problem is one invalid setting.
type Problem struct {
	Path    string // relative to the platform block, e.g. "token"
	Message string
}

// Limits is how fast the outbox may send through one connector.
type Limits struct {
	// PerConversation is the minimum interval between two messages to one
	// direct conversation (Telegram: 1s).
	PerConversation time.Duration
	// PerGroup is the minimum interval between two messages to one group
	// (Telegram: 3s, i.e. 20 per minute).
	PerGroup time.Duration
	// PerAccount is the sustained rate across all conversations of one
	// account, in messages per second (Telegram: 30); Burst how many may go
	// at once.
	PerAccount float64
	Burst      int
	// ReplyWindow is how long after the customer's last message a reply is
	// still allowed (Messenger: 24h); 0 means no window.
	ReplyWindow time.Duration
}

// WebhookConnector is implemented by connectors that receive platform
// webhooks; the handler is mounted at /webhooks/{id} behind the shared body
// limit, request id and readiness gate.
type WebhookConnector interface {
	Webhook() http.Handler
}

// Exclusive is implemented by connectors whose Run must execute on exactly
// one instance at a time (a Telegram poller, a WhatsApp device). The
// supervisor runs them only while holding the connector's lease.
type Exclusive interface {
	Exclusive() bool
}

// MediaInfo describes fetched media bytes.
type MediaInfo struct {
	MimeType string
	Size     int64 // -1 when unknown
	Filename string
}

// MediaFetcher is implemented by connectors whose events carry attachments;
// the media job calls it with an Attachment's FetchRef after the message
// event is stored. A Permanent error ends the job with media.failed and its
// message as the reason.
type MediaFetcher interface {
	FetchMedia(ctx context.Context, ref string) (io.ReadCloser, MediaInfo, error)
}

// InboundStats counts the platform updates a connector has seen since it
// was built.
type InboundStats struct {
	Received uint64 // every update, whatever became of it
	Ignored  uint64 // of a kind Parley does not map: acknowledged, nothing stored
	Failed   uint64 // malformed or unmappable: refused or skipped, and logged
}

// InboundCounter is implemented by connectors that count their inbound
// updates; the counts are exported as metrics.
type InboundCounter interface {
	InboundStats() InboundStats
}
