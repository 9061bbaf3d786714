// Package secret holds String, the one type for credentials in Parley:
// config/ holds the gateway's own (NATS password, API tokens) in it, and
// every connector holds its platform's (bot tokens, app secrets) in it, so
// that a settings value can be logged or printed whole without leaking one.
package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"go.yaml.in/yaml/v3"
)

// Redacted is what every printed form of a non-empty String shows.
const Redacted = "[redacted]"

// errMustBeString is the decoding error of a non-scalar YAML value.
var errMustBeString = errors.New("must be a string")

// String is a configuration string that must never be printed: a token, a
// password, an app secret. Every way Go usually turns a value into text —
// fmt with any verb, encoding/json, YAML, encoding.TextMarshaler users and
// log/slog — yields "[redacted]". Only Reveal returns the value.
//
// An empty String prints as the empty string (and "" for %#v and JSON): that
// a secret is unset is not itself secret, and seeing it helps diagnose a
// missing environment variable.
//
// Limit: reflection can still reach the value when a String sits in an
// unexported struct field that fmt prints, because fmt cannot call methods
// there. Keep Strings in exported fields or pass them around on their own.
type String string

// Reveal returns the secret value. Call it only where the value is used
// (an Authorization header, a signature check), never to log it.
func (s String) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString implements fmt.GoStringer, for %#v.
func (s String) GoString() string {
	if s == "" {
		return `""`
	}
	return Redacted
}

// Format implements fmt.Formatter so that no verb, flag or width can print
// the value: %x or %q would otherwise format the underlying string.
func (s String) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// LogValue implements slog.LogValuer.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON implements json.Marshaler.
func (s String) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText implements encoding.TextMarshaler, which encoders without a
// dedicated interface (encoding/xml, many TOML and env libraries) fall back to.
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML implements yaml.Marshaler.
func (s String) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler. A String is any scalar; its
// text is taken as written, so a token of digits stays exactly that.
func (s *String) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errMustBeString
	}
	*s = String(n.Value)
	return nil
}
