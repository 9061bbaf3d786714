package config

import (
	_ "embed"
	"fmt"
	"strings"
)

// The top of the example is kept as a YAML file, not a Go string, so that it
// reads and diffs like the configuration it shows. It ends with the
// connectors key; Example adds one connector per sample.
//
//go:embed example.yaml
var exampleTop string

// Sample is one platform's connector block for Example: the connector
// descriptor's own sample, the one source of truth for its settings.
type Sample struct {
	Platform string
	Block    string // YAML of the platform block, with comments
}

// Example returns a commented sample configuration: the top-level settings,
// then one enabled connector in region eu for each sample, its block under
// the platform's key. Secrets in it are ${ENV_VAR} references.
func Example(samples ...Sample) string {
	var b strings.Builder
	b.WriteString(exampleTop)
	if len(samples) == 0 {
		b.WriteString("  []\n")
	}
	for _, s := range samples {
		fmt.Fprintf(&b, "  - id: %s-eu\n    platform: %s\n    region: eu\n    enabled: true\n    %s:\n", s.Platform, s.Platform, s.Platform)
		for _, line := range strings.Split(strings.TrimRight(s.Block, "\n"), "\n") {
			if line == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString("      " + line + "\n")
		}
	}
	return b.String()
}
