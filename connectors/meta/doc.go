// Package meta is what Meta's messaging products share, for the Messenger
// and Instagram connectors (and the WhatsApp Cloud API later): the webhook
// verification handshake, the X-Hub-Signature-256 check over the raw body,
// the webhook envelope (object, entry[], messaging[]), appsecret_proof,
// the Send API client, and the classification of Graph API error bodies. It knows no product:
// each connector maps the envelope's events and renders its own sends.
package meta
