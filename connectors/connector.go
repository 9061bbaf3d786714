// Package connectors defines the contract between Parley and one platform
// account: how a connector is described, constructed, run, asked about its
// platform's rules, asked to send, and how it reports health and classifies
// failures. Each platform lives in its own folder (connectors/telegram, ...)
// with its simulator beside it; connectors/registry lists them,
// connectors/kit holds what every connector would otherwise copy, and
// connectors/connectortest is the conformance suite every connector runs.
//
// # Transports and their ack points
//
// Every transport a platform offers maps onto the same two duties — store
// first, acknowledge after — through Deps.Publisher, which returns only when
// every event is durable in JetStream:
//
//   - Signed webhooks (Telegram webhook mode, Meta's Messenger, Instagram and
//     WhatsApp Cloud, the Slack Events API): the connector implements
//     WebhookConnector, usually with kit.Webhook. The handler reads the body
//     within the limit (413), verifies the signature (401), parses (400),
//     stores every event of the request — Meta batches many events for many
//     accounts in one POST — and answers 200 only after that, within the
//     platform's answer budget; a storage outage answers 503 so the
//     platform retries, and deterministic event ids make the retry a no-op
//     in JetStream. One webhook connector serves every account listed in its
//     settings (Meta pages, numbers), so the account is part of every id.
//   - Long polling with a cursor (Telegram getUpdates): Run polls, stores the
//     whole batch, and only then saves the cursor through Deps.Cursors. Only
//     one poller may hold a token, so the connector implements Exclusive and
//     runs only while its instance holds the lease.
//   - Sockets that acknowledge each event (whatsmeow with SynchronousAck,
//     Slack Socket Mode): Run keeps the socket and acknowledges each event's
//     envelope (or returns whatsmeow's success status) only after the store
//     returned nil. A device session is exclusive, as above, and its sends
//     need the session too (SendAffinity).
//
// An update that cannot become a stored event — the server refuses it
// (over its max payload, say) or the connector cannot map it — never wedges
// the transport: it is acknowledged and kept raw on the region's inbound
// dead-letter subject through Deps.Rejects (kit.Store does this). Only a
// storage outage withholds the acknowledgement.
//
// # Outbound
//
// The outbox owns ordering, pacing, retries, reachability and
// dead-lettering, and knows no platform's rules: it asks the connector.
// Policy answers how fast Parley may send to a conversation and until when
// (limits per account and per conversation, the reply window), Admit
// whether a reply may go now and how, Plan renders it (pure), and SendPart
// performs one platform call per part, classifying its failure with the
// error constructors of this package — nothing else.
//
// # Afterwards
//
// Every platform message id Parley sent is in the reply ledger
// (Deps.Ledger): receipts name the replies they cover, echoes of Parley's
// own sends are recognised, and a failure the platform reports after the
// send call succeeded becomes one late reply.failed.
package connectors

import (
	"context"
	"time"

	"github.com/parley-gateway/parley/normalize"
)

// Connector is one platform account served by Parley.
//
// Lifecycle: New (in the Descriptor) decodes and validates settings and does
// no I/O; Run does the I/O. Policy, Plan and SendPart may be called before
// Run has started and while it runs, concurrently from many goroutines.
type Connector interface {
	// Run connects and receives until ctx ends, storing every inbound event
	// through Deps.Publisher and acknowledging the platform only after the
	// store returned nil. Transient trouble (platform outage, NATS outage)
	// is retried inside Run and shown through Health. Run returns nil when
	// ctx ends, with every goroutine it started finished. It returns an
	// error when it cannot go on: one made with NeedsOperator (revoked
	// token, logged-out device) stops the connector until an operator acts;
	// any other error is restarted by the supervisor with backoff.
	Run(ctx context.Context) error

	// Health returns the last known state without doing I/O.
	Health() Health

	// Policy returns how fast Parley may send to a conversation and for how
	// long after the customer's last message. It is pure and cheap: the
	// outbox asks before every send and ingest for every inbound event, so
	// that the window_expires_at an event carries and the window the outbox
	// enforces come from the same answer.
	Policy(to Address) Policy

	// Plan renders a canonical reply into the platform messages it takes,
	// in the order they must be sent (text split at natural boundaries,
	// one message per attachment...), the way adm says (a message tag...).
	// It is pure and deterministic: the outbox calls it again on every
	// attempt and relies on part i being the same part each time, so it can
	// skip parts already sent. Limits of the platform (text length, button
	// ids) are checked here. An error is permanent (use Permanent with
	// ErrInvalidReply, ErrUnsupported or ErrTooLarge).
	Plan(reply *normalize.Reply, to Address, adm Admission) ([]Part, error)

	// SendPart performs exactly one platform call for one part, without
	// retrying and without side effects beyond the call: the outbox records
	// what the outcome teaches (an unreachable recipient, a rate limit).
	// Errors are classified with Permanent, RetryAfter or Transient; an
	// unclassified error counts as transient.
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
	// LastInboundAt is when the customer last wrote; zero when unknown
	// (ingest asks for the policy of an event before it is recorded).
	LastInboundAt time.Time
}

// Health is a connector's state as operators see it in /readyz and in
// parley.connector.state events.
type Health struct {
	State  normalize.State
	Reason string    // why, in a sentence; never a secret
	Action string    // what an operator should do, if anything
	Since  time.Time // when State last changed
}
