// Package bus is Parley's NATS plumbing: the embedded JetStream server, the
// client connection, provisioning of each region's streams, buckets and object
// store, the subject grammar, the durable publisher and single-owner leases.
//
// Invariants every caller may rely on:
//
//   - Publish returns nil only after JetStream acknowledged every message
//     (PubAck). Any other outcome is an error wrapping [ErrNotDurable]: a
//     caller that acknowledges a platform only after a nil error never
//     acknowledges something that is not stored. The one exception is a
//     message marked Conditional (an optimistic write with an expected
//     sequence): the server's refusal of it is reported in its PubResult.Err,
//     not as a failure of the call, so the caller can fall back.
//   - Every published message carries Nats-Msg-Id, so a retry, a platform
//     redelivery or a re-publish after a disconnect is deduplicated by the
//     stream inside its dedupe window.
//   - Provision creates or updates; it never deletes a stream, a bucket or a
//     message, and it fails loudly when an existing configuration cannot be
//     brought to the wanted one (for example a retention policy change).
//   - A function run under [RunWithLease] runs on at most one holder of the
//     key at a time, and its context is cancelled as soon as the holder can no
//     longer prove it still owns the lease.
//
// Secrets in [Options] (password, token, credential files) are never logged
// and never appear in errors returned by this package.
package bus
