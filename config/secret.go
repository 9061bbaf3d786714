package config

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"go.yaml.in/yaml/v3"
)

// redacted is what every printed form of a non-empty Secret shows.
const redacted = "[redacted]"

// Secret is a configuration string that must never be printed: a token, a
// password, an app secret. Every way Go usually turns a value into text —
// fmt with any verb, encoding/json, YAML, encoding.TextMarshaler users and
// log/slog — yields "[redacted]". Only Reveal returns the value.
//
// An empty Secret prints as the empty string (and "" for %#v and JSON): that
// a secret is unset is not itself secret, and seeing it helps diagnose a
// missing environment variable.
//
// Limit: reflection can still reach the value when a Secret sits in an
// unexported struct field that fmt prints, because fmt cannot call methods
// there. Keep Secrets in exported fields or pass them around on their own.
type Secret string

// Reveal returns the secret value. Call it only where the value is used
// (an Authorization header, a signature check), never to log it.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string {
	if s == "" {
		return `""`
	}
	return redacted
}

// Format implements fmt.Formatter so that no verb, flag or width can print
// the value: %x or %q would otherwise format the underlying string.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText implements encoding.TextMarshaler, which encoders without a
// dedicated interface (encoding/xml, many TOML and env libraries) fall back to.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler. A Secret is any scalar; its
// text is taken as written, so a token of digits stays exactly that.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errMustBeString
	}
	*s = Secret(n.Value)
	return nil
}
