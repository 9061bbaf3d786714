// Package registry is the list of connectors built into Parley. Adding a
// platform is one folder under connectors/ and one line here; nothing else
// in Parley names a platform: config validation, `parley config example`,
// `parley demo` and the supervisor all read this list.
package registry

import (
	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/connectors/telegram"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
)

// Platform is one built-in connector: its descriptor, and the simulator
// `parley demo` drives it against.
type Platform struct {
	connectors.Descriptor
	Demo simkit.DemoFactory
}

// All returns every built-in connector, in the order samples are printed
// and the demo runs.
func All() List {
	return List{
		{telegram.Descriptor, telegramsim.NewDemo},
	}
}

// List is a set of platforms: All, or All with more in a test.
type List []Platform

// Lookup returns the platform of a name.
func (l List) Lookup(platform string) (Platform, bool) {
	for _, p := range l {
		if p.Platform == platform {
			return p, true
		}
	}
	return Platform{}, false
}

// Names returns the platform names, in order.
func (l List) Names() []string {
	out := make([]string, len(l))
	for i, p := range l {
		out[i] = p.Platform
	}
	return out
}

// Lookup returns the built-in platform of a name.
func Lookup(platform string) (Platform, bool) { return All().Lookup(platform) }
