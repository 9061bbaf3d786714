package connectors

import (
	"context"
	"io"
	"net/http"
	"time"
)

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

	// Sample is a commented YAML sample of the platform block, the one
	// source of `parley config example`.
	Sample string
}

// Problem is one invalid setting.
type Problem struct {
	Path    string // relative to the platform block, e.g. "token"
	Message string
}

// Settings is a connector's own configuration block, still undecoded.
type Settings interface {
	// DecodeSettings decodes the block strictly into v: unknown keys are
	// an error.
	DecodeSettings(v any) error
}

// WebhookConnector is implemented by connectors that receive platform
// webhooks; the handler is mounted at /webhooks/{id} behind the shared body
// limit, request id and readiness gate. POST carries events; GET is the
// verification handshake of platforms that have one (Meta).
type WebhookConnector interface {
	Webhook() http.Handler
}

// Exclusive is implemented by connectors whose Run must execute on exactly
// one instance at a time (a Telegram poller, a WhatsApp device). The
// supervisor runs them only while holding the connector's lease, and
// cancels Run's context as soon as the lease cannot be proven held.
type Exclusive interface {
	Exclusive() bool
}

// SendAffinity is implemented by connectors whose sends and media fetches
// need the live session that Run keeps (a WhatsApp device). Only the
// instance holding the connector's lease sends for it; another instance
// hands a reply back without counting an attempt.
type SendAffinity interface {
	SendsNeedSession() bool
}

// MediaFetcher is implemented by connectors whose events carry attachments;
// the media job calls it with an Attachment's FetchRef after the message
// event is stored. A Permanent error ends the job with media.failed and its
// message as the reason.
type MediaFetcher interface {
	FetchMedia(ctx context.Context, ref string) (io.ReadCloser, MediaInfo, error)
}

// Pairer is implemented by connectors whose platform links a device
// session (WhatsApp on the multi-device protocol). `parley pair <platform>
// --connector ID` builds the connector and calls Pair; Run need not run.
type Pairer interface {
	// Pair links a new session, showing each prompt through req.Show,
	// and returns nil once linked, or an error when linking failed or ctx
	// ended. It stores the session where Run finds it (under Deps.DataDir).
	Pair(ctx context.Context, req PairRequest) error
}

// PairRequest is what the operator asked `parley pair` for.
type PairRequest struct {
	// Phone, in E.164 form, asks for a pairing code to type on that phone
	// instead of a QR code to scan; "" for a QR code.
	Phone string
	// Show presents a prompt to the operator; it is called again with each
	// new code as the previous one expires.
	Show func(PairPrompt)
}

// PairPrompt is one code for the operator.
type PairPrompt struct {
	QR      string    // the payload to render as a QR code; "" with Code
	Code    string    // a pairing code to type on the phone; "" with QR
	Expires time.Time // when the code stops working; zero when unknown
}

// InboundStats counts the platform updates a connector has seen since it
// was built.
type InboundStats struct {
	Received     uint64 // every update, whatever became of it
	Ignored      uint64 // of a kind Parley does not map: acknowledged, nothing stored
	Failed       uint64 // malformed (refused) or unmappable (dead-lettered), and logged
	DeadLettered uint64 // acknowledged and kept on the inbound dead-letter subject
}

// InboundCounter is implemented by connectors that count their inbound
// updates; the counts are exported as metrics.
type InboundCounter interface {
	InboundStats() InboundStats
}
