package bus

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Subject classes: the token that follows the prefix.
const (
	ClassEvent    = "evt"
	ClassCommand  = "cmd"
	ClassDLQ      = "dlq"
	ClassMediaJob = "media"
)

// CommandKind is the last token of every reply-command subject.
const CommandKind = "send"

// InboundKind is the last token of inbound dead-letter subjects.
const InboundKind = "inbound"

// NoConversation is the conversation token of connector-level subjects.
const NoConversation = "_"

// Stream kinds for [StreamName].
const (
	StreamEvents   = "EVT"
	StreamCommands = "CMD"
	StreamDLQ      = "DLQ"
	StreamMedia    = "MEDIA"
)

// Bucket purposes for [BucketName].
const (
	BucketDirectory = "directory"
	BucketLeases    = "leases"
	BucketCursors   = "cursors"
	BucketOutbox    = "outbox"
	BucketLedger    = "ledger"
	BucketMedia     = "media"
)

// ErrBadSubject is wrapped by every [ParseSubject] error.
var ErrBadSubject = errors.New("malformed parley subject")

// StreamName names a region's stream: kind is "EVT", "CMD", "DLQ" or
// "MEDIA"; StreamName("EVT", "eu-west") is "PARLEY_EVT_EU_WEST".
func StreamName(kind, region string) string {
	return "PARLEY_" + strings.ToUpper(kind) + "_" + strings.ToUpper(strings.ReplaceAll(region, "-", "_"))
}

// BucketName names a region's key-value bucket or object store, as the
// contract spells it: BucketName("leases", "eu-west") is
// "parley_leases_eu-west" (bucket names, unlike stream names, may hold '-').
func BucketName(purpose, region string) string {
	return "parley_" + purpose + "_" + region
}

// Token makes v safe as one subject token and as (part of) a KV key. The
// result is deterministic and at most 64 characters, in [A-Za-z0-9_-]:
//
//   - v itself when it is 1–64 characters of [A-Za-z0-9_-] not starting
//     with "_" (Parley's own ids such as "c_…" pass through unchanged);
//   - otherwise "_b" + base64url(v) without padding, when that fits 64;
//   - otherwise "_h" + the first 32 characters of base64url(sha256(v)).
//
// Raw tokens never start with "_", so the three forms cannot collide. Keep
// the original value in the payload: the "_h" form cannot be reversed.
func Token(v string) string {
	if isRawToken(v) {
		return v
	}
	if enc := base64.RawURLEncoding.EncodeToString([]byte(v)); len(enc) <= 62 {
		return "_b" + enc
	}
	sum := sha256.Sum256([]byte(v))
	return "_h" + base64.RawURLEncoding.EncodeToString(sum[:])[:32]
}

func isRawToken(v string) bool {
	if len(v) == 0 || len(v) > 64 || v[0] == '_' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isTokenByte(v[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Subjects builds Parley's subjects (CONTRACT §4). Every token is passed
// through [Token], so no value can add a token or a wildcard; valid region,
// platform, connector and conversation ids come out unchanged. An empty
// Prefix means "parley".
type Subjects struct{ Prefix string }

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultSubjectPrefix
	}
	return s.Prefix
}

func (s Subjects) join(class string, tokens ...string) string {
	var b strings.Builder
	b.WriteString(s.prefix())
	b.WriteByte('.')
	b.WriteString(class)
	for _, t := range tokens {
		b.WriteByte('.')
		b.WriteString(t)
	}
	return b.String()
}

func convToken(conv string) string {
	if conv == "" || conv == NoConversation {
		return NoConversation
	}
	return Token(conv)
}

// Event is <p>.evt.<region>.<platform>.<connector>.<conv>.<kind>; conv ""
// is "_" (a connector-level event).
func (s Subjects) Event(region, platform, connector, conv, kind string) string {
	return s.join(ClassEvent, Token(region), Token(platform), Token(connector), convToken(conv), Token(kind))
}

// Command is <p>.cmd.<region>.<platform>.<connector>.<conv>.send.
func (s Subjects) Command(region, platform, connector, conv string) string {
	return s.join(ClassCommand, Token(region), Token(platform), Token(connector), convToken(conv), CommandKind)
}

// DLQ is <p>.dlq.<region>.<platform>.<connector>.<conv>.
func (s Subjects) DLQ(region, platform, connector, conv string) string {
	return s.join(ClassDLQ, Token(region), Token(platform), Token(connector), convToken(conv))
}

// InboundDLQ is <p>.dlq.<region>.<platform>.<connector>._.inbound: platform
// updates that were acknowledged but could not be stored as events.
func (s Subjects) InboundDLQ(region, platform, connector string) string {
	return s.join(ClassDLQ, Token(region), Token(platform), Token(connector), NoConversation, InboundKind)
}

// MediaJob is <p>.media.<region>.<platform>.<connector>.<conv>.
func (s Subjects) MediaJob(region, platform, connector, conv string) string {
	return s.join(ClassMediaJob, Token(region), Token(platform), Token(connector), convToken(conv))
}

// Events is <p>.evt.<region>.>, every event of a region.
func (s Subjects) Events(region string) string { return s.join(ClassEvent, Token(region), ">") }

// Commands is <p>.cmd.<region>.>, every reply command of a region.
func (s Subjects) Commands(region string) string { return s.join(ClassCommand, Token(region), ">") }

// ConnectorCommands is <p>.cmd.<region>.*.<connector>.*.send, the reply
// commands of one connector (connector is a subject token, as in a parsed
// subject): the filter of its outbox consumer.
func (s Subjects) ConnectorCommands(region, connectorToken string) string {
	return s.join(ClassCommand, Token(region), "*", connectorToken, "*", CommandKind)
}

// DLQs is <p>.dlq.<region>.>, every dead letter of a region.
func (s Subjects) DLQs(region string) string { return s.join(ClassDLQ, Token(region), ">") }

// MediaJobs is <p>.media.<region>.>, every media job of a region.
func (s Subjects) MediaJobs(region string) string { return s.join(ClassMediaJob, Token(region), ">") }

// Parse is [ParseSubject] that also requires the subject to carry this prefix.
func (s Subjects) Parse(subject string) (SubjectInfo, error) {
	info, err := ParseSubject(subject)
	if err != nil {
		return info, err
	}
	if info.Prefix != s.prefix() {
		return SubjectInfo{}, fmt.Errorf("%w: %q: prefix %q, want %q", ErrBadSubject, subject, info.Prefix, s.prefix())
	}
	return info, nil
}

// SubjectInfo is a parsed subject. Tokens are as they appear in the subject
// (escaped by [Token] where the original needed it).
type SubjectInfo struct {
	Prefix       string // possibly several tokens, e.g. "acme.parley"
	Class        string // ClassEvent, ClassCommand, ClassDLQ or ClassMediaJob
	Region       string
	Platform     string
	Connector    string
	Conversation string // "" for connector-level subjects ("_")
	Kind         string // the event kind; "send" for commands; "inbound" for inbound dead letters; "" for other dlq and media
}

// ParseSubject splits an evt, cmd, dlq or media subject into its tokens. It
// reads from the right, so any prefix works; it returns an error wrapping
// [ErrBadSubject] for anything else, including wildcards and empty tokens.
func ParseSubject(subject string) (SubjectInfo, error) {
	bad := func(why string) (SubjectInfo, error) {
		return SubjectInfo{}, fmt.Errorf("%w: %q: %s", ErrBadSubject, subject, why)
	}
	tokens := strings.Split(subject, ".")
	for _, t := range tokens {
		if t == "" {
			return bad("empty token")
		}
		for i := 0; i < len(t); i++ {
			if t[i] == '*' || t[i] == '>' || t[i] <= ' ' || t[i] == 0x7f {
				return bad("wildcard or whitespace")
			}
		}
	}
	n := len(tokens)
	var info SubjectInfo
	var rest []string // region, platform, connector, conv[, kind]
	switch {
	case n >= 7 && tokens[n-6] == ClassEvent:
		info.Class, info.Prefix, rest = ClassEvent, strings.Join(tokens[:n-6], "."), tokens[n-5:]
		info.Kind = rest[4]
	case n >= 7 && tokens[n-6] == ClassCommand:
		if tokens[n-1] != CommandKind {
			return bad("command subject must end in ." + CommandKind)
		}
		info.Class, info.Prefix, rest = ClassCommand, strings.Join(tokens[:n-6], "."), tokens[n-5:]
		info.Kind = CommandKind
	case n >= 7 && tokens[n-6] == ClassDLQ && tokens[n-2] == NoConversation && tokens[n-1] == InboundKind:
		info.Class, info.Prefix, rest = ClassDLQ, strings.Join(tokens[:n-6], "."), tokens[n-5:n-1]
		info.Kind = InboundKind
	case n >= 6 && tokens[n-5] == ClassDLQ:
		info.Class, info.Prefix, rest = ClassDLQ, strings.Join(tokens[:n-5], "."), tokens[n-4:]
	case n >= 6 && tokens[n-5] == ClassMediaJob:
		info.Class, info.Prefix, rest = ClassMediaJob, strings.Join(tokens[:n-5], "."), tokens[n-4:]
	default:
		return bad("not an evt, cmd, dlq or media subject")
	}
	info.Region, info.Platform, info.Connector = rest[0], rest[1], rest[2]
	if rest[3] != NoConversation {
		info.Conversation = rest[3]
	}
	return info, nil
}

// validatePrefix accepts one or more dot-separated tokens of [A-Za-z0-9_-].
func validatePrefix(p string) error {
	for _, t := range strings.Split(p, ".") {
		if t == "" {
			return fmt.Errorf("subject prefix %q: empty token", p)
		}
		for i := 0; i < len(t); i++ {
			if !isTokenByte(t[i]) {
				return fmt.Errorf("subject prefix %q: only [A-Za-z0-9_-] tokens separated by dots", p)
			}
		}
	}
	return nil
}
