// Package fakechat connects the fictional platform fakechat to Parley. It is
// the smallest complete webhook connector built on connectors/kit — the one
// to copy for Messenger, Instagram, WhatsApp Cloud and Slack — and the
// connector Parley's core packages test against, with its simulator in
// fakechatsim.
//
// fakechat is Meta-like: one app serves several accounts, and one signed
// POST /webhooks/{id} carries entries for several of them. The file layout
// is the one every connector has:
//
//   - fakechat.go: the Connector, its Descriptor, Run, Policy;
//   - config.go: the settings block, decoded strictly;
//   - webhook.go: the signature check, the handshake, and the ledger
//     lookups that complete receipts, echoes and late failures;
//   - inbound.go: body → events, a pure function pinned by golden files
//     and fuzzed;
//   - outbound.go: Plan (pure) and SendPart (one API call);
//   - errors.go: the error table; media.go: attachment downloads.
//
// Inbound, kit.Webhook owns the ack point: fakechat gets its 200 only after
// every event of the body is stored (or deliberately ignored, or kept on
// the inbound dead-letter subject when it cannot be mapped, such as an
// entry for an account not in the settings). Event ids derive from the
// account and fakechat's own ids, so a redelivery stores nothing twice;
// conversation and sender ids derive from the account and the customer,
// never from the connector id.
//
// Outbound, each account sends with its own token and has its own sending
// budget (50 messages a second, 10 at once, unless the operator says
// otherwise); the reply window is Meta's, 24 hours, and 7 days for a human
// agent's reply tagged HUMAN_AGENT.
package fakechat
