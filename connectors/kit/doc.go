// Package kit is what every connector would otherwise write for itself:
// the webhook skeleton (verify, read within a limit, parse, store, answer
// within the platform's budget), the store step that dead-letters poison
// updates instead of wedging on them, health derived from what each part of
// a connector knows (with the storage probe a webhook connector needs),
// sending limits with the operator's overrides, reply windows, settings
// problems, and the small waits every loop needs.
//
// A connector built on the kit keeps only what is its platform's own: the
// payload mapping, the signature check, the outbound calls and the error
// table. connectors/connectortest's fakechat is the smallest complete
// example, and docs/writing-a-connector.md walks through it.
package kit
