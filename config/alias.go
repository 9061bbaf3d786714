package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Bounds on what YAML aliases may add to a configuration. The parsed node
// tree keeps each alias as one node pointing at its anchor, but decoding
// and checking walk the anchored value again at every reference, so a small
// file can stand for an enormous one: a 20,000-item list referenced by 2,000
// connectors is 40 million nodes to check and as many problems to report.
// yaml's own guard against this (its alias ratio) counts within one Decode
// call, and config decodes many small nodes one at a time, so it never
// trips. Aliases in a real configuration share a block among a few dozen
// connectors: a few thousand nodes and kilobytes. The bounds are far above
// that and far below what takes seconds or hundreds of megabytes to check.
const (
	// maxAliasNodes bounds the nodes that references to anchors add to the
	// document, counting nested references as often as they expand.
	maxAliasNodes = 100_000
	// maxAliasBytes bounds the scalar text (keys and values) those
	// references add: one long value referenced often is the same bomb with
	// few nodes.
	maxAliasBytes = 4 << 20
)

// checkAliases returns the problem of a document whose aliases expand past
// maxAliasNodes or maxAliasBytes, or whose anchor contains a reference to
// itself (an expansion without end), or nil. It visits each node of the
// parsed tree at most twice whatever the aliases expand to: the size of an
// anchored value is computed once and counted at every reference, and the
// walk stops at the reference that crosses a bound.
func checkAliases(root *yaml.Node) *Problem {
	c := aliasCounter{sizes: map[*yaml.Node]expansion{}, open: map[*yaml.Node]bool{}}
	return c.walk(root)
}

// expansion is the size of a node with its references expanded. Both
// counts saturate just past their bound, so a nest of references (ten
// levels of ten) cannot overflow them.
type expansion struct{ nodes, bytes int }

func (e expansion) plus(f expansion) expansion {
	return expansion{min(e.nodes+f.nodes, maxAliasNodes+1), min(e.bytes+f.bytes, maxAliasBytes+1)}
}

func (e expansion) exceeds() bool { return e.nodes > maxAliasNodes || e.bytes > maxAliasBytes }

type aliasCounter struct {
	added expansion
	// sizes holds the expansion of every anchored node measured so far.
	sizes map[*yaml.Node]expansion
	// open holds the anchored nodes being measured: meeting one again
	// means it contains itself.
	open map[*yaml.Node]bool
	// loop is the anchor found to contain itself.
	loop *yaml.Node
}

// walk visits the tree as written, adding the expansion of each reference.
func (c *aliasCounter) walk(n *yaml.Node) *Problem {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil // yaml refuses an unknown anchor while parsing
		}
		c.added = c.added.plus(c.size(n.Alias))
		switch {
		case c.loop != nil:
			return &Problem{Line: n.Line, Message: fmt.Sprintf("anchor %q contains a reference to itself, so it expands without end; refusing the configuration", c.loop.Anchor)}
		case c.added.nodes > maxAliasNodes:
			return &Problem{Line: n.Line, Message: fmt.Sprintf("the configuration expands to more than %d nodes through YAML aliases; refusing it", maxAliasNodes)}
		case c.added.bytes > maxAliasBytes:
			return &Problem{Line: n.Line, Message: fmt.Sprintf("the configuration expands to more than %d MiB through YAML aliases; refusing it", maxAliasBytes>>20)}
		}
		return nil
	}
	for _, child := range n.Content {
		if p := c.walk(child); p != nil {
			return p
		}
	}
	return nil
}

// size returns the expansion of n, stopping early once it exceeds a bound.
func (c *aliasCounter) size(n *yaml.Node) expansion {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return expansion{nodes: 1}
		}
		return c.size(n.Alias)
	}
	if n.Anchor != "" {
		if s, ok := c.sizes[n]; ok {
			return s
		}
		if c.open[n] {
			c.loop = n
			return expansion{maxAliasNodes + 1, maxAliasBytes + 1}
		}
		c.open[n] = true
		defer delete(c.open, n)
	}
	s := expansion{1, len(n.Value)}
	for _, child := range n.Content {
		if s = s.plus(c.size(child)); s.exceeds() {
			break
		}
	}
	if n.Anchor != "" {
		c.sizes[n] = s
	}
	return s
}
