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
// and a connector for platform, or one for every platform when platform is
// "" (WhatsApp appears twice, once per transport, whatever was asked).
// Secrets in it are ${ENV_VAR} references. An unknown platform is an error.
func Example(platform string) (string, error) {
	names := platforms
	if platform != "" {
		if !slices.Contains(platforms, platform) {
			return "", fmt.Errorf("unknown platform %q (want one of %s)", platform, strings.Join(platforms, ", "))
		}
		names = []string{platform}
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
