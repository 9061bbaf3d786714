// Package fakechatsim simulates the fictional platform fakechat over real
// HTTP on 127.0.0.1, so that the fakechat connector, Parley's core packages
// and `parley demo` run against the wire format the connector speaks, with
// no network. It is built on connectors/simkit and is the model for a Meta-
// style simulator: one app serving several accounts.
//
// What it simulates:
//   - the messages API, POST /v1/{account}/messages with "Authorization:
//     Bearer <the account's token>" and {"to","text","choices","reply_to",
//     "attachment":{"url"},"tag"}, answered 200 {"id":"fm_out_<n>"} or
//     {"error":{"code","message"}}: 401 for a wrong token, 404 no_user for
//     a customer who never wrote to the account, 403 blocked (Block), 400
//     invalid for a message over fakechat's limits, 429 with Retry-After
//     over the per-account rate limit (Options.RateLimit), and any failure
//     injected with FailNext;
//   - attachment downloads, GET /media/{id} with the owning account's
//     token, for blobs registered with AddMedia (410 once RemoveMedia);
//   - webhook pushes to the URL given to Attach: {"object":"fakechat",
//     "entry":[{"account","time","events":[...]}]} signed with
//     X-Fakechat-Signature: sha256=<hex HMAC-SHA256(app secret, body)>,
//     retried on Options.Retries until a 2xx, one push after another;
//     builders for every event type; batches of entries for several
//     accounts; redelivery of the last body; forged and malformed pushes;
//   - the verification handshake, as the client fakechat's console is
//     (Handshake).
//
// What it does not simulate: the reply window (inject WindowClosed),
// message tags beyond checking their spelling, fetching attachment URLs
// of sends, and late failures on its own (push Failed). Records live in
// memory; every accepted message is kept, in order.
//
// Invariants: ids increase by one per kind (fm_in_<n> for customers'
// messages, fm_out_<n> for the business's, fm_pb_<n> for postbacks); event
// times increase strictly, so no two events built here share a ts; a
// refused send records nothing and consumes no rate budget. All methods
// are safe for concurrent use; Close ends every wait inside the simulator.
package fakechatsim
