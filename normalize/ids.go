package normalize

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// ConversationID identifies one conversation (a direct chat, a group, a
// channel, a thread) of one platform account. Format: "c_" followed by 24
// characters of [A-Za-z0-9_-]. Scope: global; it derives from the platform,
// the platform account (bot, page, workspace, device) and the platform's own
// chat id, never from the connector id, so renaming a connector keeps it.
type ConversationID string

// SenderID identifies one person or bot as seen by one platform account.
// Format: "u_" + 24 characters of [A-Za-z0-9_-]. Same derivation rules as
// ConversationID.
type SenderID string

// EventID identifies one canonical event. Format: "e_" + 32 characters of
// [A-Za-z0-9_-]. It derives from the platform's own ids of the event, so a
// redelivery of the same platform event yields the same EventID. It is also
// the event's Nats-Msg-Id.
type EventID string

// MediaID identifies one inbound attachment. Format: "m_" + 24 characters of
// [A-Za-z0-9_-]; it derives from the platform's stable id of the file.
type MediaID string

const idSep = "\x1f" // unit separator: cannot occur in platform ids we hash

func hashID(prefix string, n int, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, idSep)))
	return prefix + base64.RawURLEncoding.EncodeToString(h[:])[:n]
}

// NewConversationID derives a conversation id from the platform name, the
// platform account id and the platform's id of the chat. Thread ids that
// make a separate conversation (e.g. a forum topic) are passed as extra parts.
func NewConversationID(platform, account, chat string, extra ...string) ConversationID {
	parts := append([]string{"conv", platform, account, chat}, extra...)
	return ConversationID(hashID("c_", 24, parts...))
}

// NewSenderID derives a sender id from the platform, account and user id.
func NewSenderID(platform, account, user string) SenderID {
	return SenderID(hashID("u_", 24, "user", platform, account, user))
}

// NewEventID derives an event id from the platform, the account and the
// platform's own identifying parts of the event (an update id, a message id
// plus an edit time, a reaction's actor and target...). The parts must be
// exactly what a redelivery repeats and nothing that changes between
// deliveries (such as the time Parley received it).
func NewEventID(platform, account string, parts ...string) EventID {
	all := append([]string{"evt", platform, account}, parts...)
	return EventID(hashID("e_", 32, all...))
}

// NewMediaID derives a media id from the platform, account and the
// platform's stable id of the file.
func NewMediaID(platform, account, fileID string) MediaID {
	return MediaID(hashID("m_", 24, "media", platform, account, fileID))
}

// StatusEventID is the id of the delivery-status event of a reply command;
// one per (reply id, outcome), so a repeated status publish is deduplicated.
func StatusEventID(replyID, outcome string) EventID {
	return EventID(hashID("e_", 32, "status", replyID, outcome))
}

// ValidID reports whether s is a well-formed Parley id with the given prefix
// ("c_", "u_", "e_", "m_"): subject-safe and at most 64 characters.
func ValidID(prefix, s string) bool {
	if !strings.HasPrefix(s, prefix) || len(s) <= len(prefix) || len(s) > 64 {
		return false
	}
	for _, r := range s[len(prefix):] {
		if !isTokenRune(r) {
			return false
		}
	}
	return true
}

func isTokenRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}
