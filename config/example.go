package config

import (
	"embed"
	"fmt"
	"slices"
	"strings"
)

// The example is kept as YAML files, not Go strings, so that it reads and
// diffs like the configuration it shows.
//
//go:embed examples/*.yaml
var examples embed.FS

// Example returns a commented sample configuration: the top-level settings
// and a connector for each named platform, or for every platform when none
// is named (WhatsApp appears twice, once per transport).
// Secrets in it are ${ENV_VAR} references. An unknown platform is an error.
func Example(names ...string) (string, error) {
	if len(names) == 0 || len(names) == 1 && names[0] == "" {
		names = platforms
	}
	for _, platform := range names {
		if !slices.Contains(platforms, platform) {
			return "", fmt.Errorf("unknown platform %q (want one of %s)", platform, strings.Join(platforms, ", "))
		}
	}
	var b strings.Builder
	for _, name := range append([]string{"header"}, names...) {
		data, err := examples.ReadFile("examples/" + name + ".yaml")
		if err != nil {
			return "", fmt.Errorf("reading embedded example: %w", err)
		}
		b.Write(data)
	}
	return b.String(), nil
}
