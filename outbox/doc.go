// Package outbox is Parley's delivery engine. It consumes the reply
// commands of one region from the work-queue stream PARLEY_CMD_<R>, sends
// them through the connector that owns each conversation, and reports the
// outcome of every command as exactly one parley.reply.sent or
// parley.reply.failed event.
//
// Invariants:
//
//   - Replies of one conversation are sent strictly in the order their
//     commands were stored (stream sequence). Before sending, a command
//     checks the stream itself for an earlier command of its conversation:
//     a work-queue message disappears only once acknowledged or terminated,
//     so an earlier one still present — waiting out a NakWithDelay, held by
//     another instance, or left behind by a crash — makes the later one
//     wait. This holds across restarts and across instances. When the head
//     of a conversation is handed back with NakWithDelay, a hold
//     ("hold.<conversation>" = its stream sequence) is recorded in the
//     outbox bucket for operators; it is removed when that command ends.
//     Other conversations proceed in parallel, and a conversation waiting on
//     a rate limit or a retry never stalls them: at most a hundred commands
//     of one conversation are held in memory, the rest wait in the stream,
//     so one busy conversation cannot use up the consumer's MaxAckPending.
//   - A part is never sent twice because of a retry that Parley could have
//     known had succeeded: before the send, the part is claimed in the
//     reply's sent-marker (KV parley_outbox_<r>, key "sent.<reply>") by
//     compare-and-set, so no other instance sends it while the claim is
//     fresh (after an AckWait expiry, a takeover); right after the platform
//     answered, its platform id is recorded and the claim cleared (a
//     compare-and-set at the claim's revision, in one batch with the reply
//     ledger's records), and every delivery starts by skipping the parts
//     the marker lists. The one window left: an instance that dies after
//     the platform accepted a part and before recording it leaves a claim
//     that lapses after claimTTL (the longest send and its bookkeeping,
//     75s); the part is then sent again. Shutdown never closes NATS under
//     a send in flight (internal/app waits for the outbox).
//   - The status event is published (and acknowledged by JetStream) before
//     the command is acked or terminated, so a crash in between repeats the
//     status, never loses it; status ids are deterministic, so the repeat
//     is dropped by the events stream's dedupe window.
//   - A terminal failure publishes the original command to PARLEY_DLQ_<R>
//     first, then reply.failed, then terminates the command.
//   - Retries are durable: short in-process retries first, then
//     NakWithDelay with exponential backoff and jitter; the attempt count is
//     kept in the sent-marker, so it survives restarts.
//
// The consumer is created with MaxDeliver -1: the outbox decides when to
// give up and dead-letters the command itself, so the server never drops a
// command on its own and no max-deliveries advisory needs capturing.
package outbox
