package connectortest

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// YAMLSettings is a platform block written as YAML, decoded strictly (an
// unknown key is an error) like Parley's config decodes it. Connectors
// never import the config package; their tests use this instead.
type YAMLSettings string

// DecodeSettings implements connectors.Settings.
func (s YAMLSettings) DecodeSettings(v any) error {
	dec := yaml.NewDecoder(strings.NewReader(string(s)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decoding settings: %w", err)
	}
	return nil
}
