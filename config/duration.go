package config

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("90s", "2h", "1h30m") or with a leading whole number of days ("7d",
// "1d12h"), because retention periods read better in days. A bare number is
// rejected, because its unit would be a guess — except 0.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does ("168h0m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler, so that JSON shows "2h0m0s"
// rather than nanoseconds.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errBadDuration
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// errBadDuration does not quote the value: a misplaced ${VAR} could put a
// secret in a duration field, and error messages must never show secrets.
var errBadDuration = errors.New("must be a duration such as 90s, 2h or 7d")

// parseDuration parses a Go duration with an optional leading "<n>d".
func parseDuration(s string) (time.Duration, error) {
	days, rest, found := strings.Cut(s, "d")
	if !found {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, errBadDuration
		}
		return v, nil
	}
	n, err := strconv.ParseInt(days, 10, 64)
	if err != nil || n < 0 || days[0] == '+' || n > math.MaxInt64/int64(24*time.Hour) {
		return 0, errBadDuration
	}
	v := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return v, nil
	}
	// "1d-2h" and "1d+2h" parse as Go durations but mean nothing sensible.
	if rest[0] == '-' || rest[0] == '+' {
		return 0, errBadDuration
	}
	r, err := time.ParseDuration(rest)
	if err != nil || v > math.MaxInt64-r {
		return 0, errBadDuration
	}
	return v + r, nil
}
