// Package telegram connects one Telegram bot to Parley through the Bot API.
//
// Inbound, updates arrive either by long polling (mode polling: Parley's own
// getUpdates loop, run on one instance at a time under a lease) or by
// webhook (mode webhook: Parley's own handler at /webhooks/{id}). Both keep
// the at-least-once promise the SDK's own poller and webhook handler do not:
// an update is acknowledged to Telegram — by a 2xx answer, or by asking
// getUpdates for a higher offset — only after every event it maps to is
// stored in JetStream. A redelivered update maps to the same event ids
// (inbound.go), so JetStream stores it once. Callback queries are answered
// and reachability (the bot blocked or unblocked) recorded only after that,
// best effort.
//
// Outbound, Plan renders a reply as Bot API calls (HTML text split at 4096
// UTF-16 units, photos and documents by URL, an inline keyboard for
// choices) and SendPart makes exactly one call per part, classifying its
// failure by the Bot API's error code and description (errors.go). The
// go-telegram/bot SDK is used for its models and these outbound calls only.
//
// The bot token is a Secret: it never appears in logs, errors or events,
// although every Bot API URL contains it.
package telegram
