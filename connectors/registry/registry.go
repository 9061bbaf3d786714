// Package registry is the list of connectors built into Parley. Adding a
// platform is one folder under connectors/ and one line here; nothing else
// in Parley names a platform.
package registry

import (
	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/telegram"
)

// All returns every built-in connector, in the order samples are printed.
func All() []connectors.Descriptor {
	return []connectors.Descriptor{
		telegram.Descriptor,
	}
}

// Lookup returns the descriptor of a platform.
func Lookup(platform string) (connectors.Descriptor, bool) {
	for _, d := range All() {
		if d.Platform == platform {
			return d, true
		}
	}
	return connectors.Descriptor{}, false
}
