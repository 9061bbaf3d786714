// Package outbox is Parley's delivery engine. It consumes the reply
// commands of one region from the work-queue stream PARLEY_CMD_<R>, sends
// them through the connector that owns each conversation, and reports the
// outcome of every command as exactly one parley.reply.sent or
// parley.reply.failed event.
//
// Ownership: a region's commands are partitioned by connector, each
// partition with its own durable consumer ("outbox-<connector>", filtered
// on the connector token, so stored subjects stay the ones helpdesks
// publish). One instance at a time owns a partition, under the lease
// "outbox.partition.<connector>" in the leases bucket; instances announce
// themselves there ("outbox.member.<instance>", with the connectors they
// run and the sessions they hold), and every instance computes the same
// assignment: a connector needing a live session goes to its holder, any
// other by rendezvous hashing to an instance running it. A stopping owner
// hands over at once; a dead one's lease lapses within the leases bucket's
// TTL.
//
// Invariants:
//
//   - Replies of one conversation are sent strictly in the order their
//     commands were stored (stream sequence). The owner keeps each
//     conversation's commands in a queue in memory; the stream is asked
//     for an earlier command of the conversation (one held by the previous
//     owner, or handed back with NakWithDelay) once per conversation and
//     ownership, and again after one of its commands went back to the
//     stream. Other conversations proceed in parallel.
//   - One conversation's backlog never stalls another's: past a hundred
//     commands of one conversation in memory, its later commands are
//     parked in the outbox bucket, in order, and acknowledged on the
//     stream, so they do not count against the consumer's MaxAckPending;
//     they are loaded back as the conversation drains (park.go).
//   - Every budget of a connector's accounts and conversations is kept by
//     the connector's one owner, so instances together never exceed it.
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
//     that lapses when its presence among the region's instances expires
//     (the leases' TTL), at the latest after claimTTL (the longest send and its bookkeeping,
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
