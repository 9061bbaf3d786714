// Package normalize is Parley's canonical vocabulary: the conversation event
// every connector publishes, the reply command every helpdesk sends, the
// typed identifiers that tie them together, and the text tools (a small
// Markdown subset, splitting at natural boundaries) that every connector
// renders with.
//
// Invariants:
//   - It imports nothing of Parley's and no platform SDK, so every connector,
//     the outbox and external tools can depend on it without pulling in the
//     others.
//   - Identifiers are deterministic: the same platform object always yields the
//     same id, on every instance and after restarts. A redelivered platform
//     event therefore has the same event id and JetStream drops the repeat.
//   - Events are data: typed fields, no free-form maps. Consumers must ignore
//     fields they do not know; Parley only ever adds fields.
package normalize
