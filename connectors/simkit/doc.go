// Package simkit is what every platform simulator (connectors/<platform>/
// <platform>sim) would otherwise write for itself: injected failures keyed
// by an API method or endpoint, a bounded record of the requests served, a
// webhook pusher that signs and retries like a platform (each push on its
// schedule, or backing off the endpoint as a whole), a per-key rate
// limiter that answers with a retry-after, and the Demo interface that
// `parley demo` drives.
//
// Everything here is platform-neutral: a simulator keeps only its
// platform's wire format (paths, bodies, error words, signature headers)
// and composes these pieces. Each piece is safe for concurrent use, has a
// usable zero value or a constructor that does no I/O, and never starts a
// goroutine it does not also finish: Pusher runs one worker only while it
// has work, and Close waits for it.
package simkit
