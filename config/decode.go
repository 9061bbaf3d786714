package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Short YAML tags, as yaml.Node.ShortTag returns them.
const (
	strTag   = "!!str"
	intTag   = "!!int"
	floatTag = "!!float"
	boolTag  = "!!bool"
	nullTag  = "!!null"
	mapTag   = "!!map"
	mergeTag = "!!merge"
)

var (
	nodeType            = reflect.TypeFor[yaml.Node]()
	durationType        = reflect.TypeFor[time.Duration]()
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

	errMustBeString = errors.New("must be a string")
)

// DecodeSettings decodes the connector's platform block into v, a pointer to
// the connector's own settings struct, strictly: an unknown key or a value
// of the wrong shape is an error. Keys absent from the block leave v's
// fields as they are, so set defaults in v first. Environment variables and
// X_file keys are already expanded; a settings struct must therefore not
// declare keys ending in "_file".
//
// The error is a *ValidationError listing every problem, with paths
// relative to the block ("pages[0].access_token"): a SettingsCheck can
// return ProblemsOf(err) and Validate adds the connector's prefix.
func (c Connector) DecodeSettings(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decoding %s settings: need a non-nil pointer, got %T", c.Platform, v)
	}
	if c.Settings == nil {
		return nil
	}
	var probs problems
	checker{&probs}.check(c.Settings, rv.Type().Elem(), path{})
	if err := probs.err(); err != nil {
		// Decode what does fit anyway, so the connector can validate the
		// rest and every problem of the block is reported at once.
		_ = c.Settings.Decode(v)
		return err
	}
	if err := c.Settings.Decode(v); err != nil {
		// The checker should have caught anything yaml rejects; this is
		// the safety net, with values scrubbed from yaml's message.
		return &ValidationError{Problems: []Problem{{Message: yamlErrorText(err)}}}
	}
	return nil
}

// checker walks a node tree beside the Go type it will be decoded into and
// reports every unknown key and every value of the wrong shape, with its
// path and line. It decodes only leaves, into throwaway values, to learn
// whether they fit; the real decoding is left to yaml, so decoded values
// follow yaml's rules exactly and the checker only adds strictness.
//
// yaml's own strict mode, Decoder.KnownFields, is not used: it exists only
// when decoding bytes, not the expanded nodes, and it stops at the first
// unknown key with a line but no path.
type checker struct{ probs *problems }

func (c checker) check(n *yaml.Node, t reflect.Type, p path) {
	n = resolveAlias(n)
	if isNull(n) {
		return // yaml leaves the target as it was: defaults survive "key:"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType {
		return
	}
	if pt := reflect.PointerTo(t); pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
		c.leaf(n, t, p)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		c.structure(n, t, p)
	case reflect.Map:
		c.dictionary(n, t, p)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			c.leaf(n, t, p) // []byte is a scalar to yaml
			return
		}
		if n.Kind != yaml.SequenceNode {
			c.probs.add(p, n.Line, "must be a list")
			return
		}
		for i, item := range n.Content {
			c.check(item, t.Elem(), p.index(i))
		}
	case reflect.Interface:
		// Anything decodes into an interface.
	default:
		c.leaf(n, t, p)
	}
}

func (c checker) structure(n *yaml.Node, t reflect.Type, p path) {
	if n.Kind != yaml.MappingNode {
		c.probs.add(p, n.Line, "must be a mapping")
		return
	}
	fields, inline := fieldsOf(t)
	c.pairs(n, p, func(k, v *yaml.Node, kp path) {
		if ft, ok := fields[k.Value]; ok {
			c.check(v, ft, kp)
		} else if inline != nil {
			c.check(v, inline, kp)
		} else {
			c.probs.add(kp, k.Line, "unknown key")
		}
	}, func(merged *yaml.Node) {
		c.structure(merged, t, p)
	})
}

func (c checker) dictionary(n *yaml.Node, t reflect.Type, p path) {
	if n.Kind != yaml.MappingNode {
		c.probs.add(p, n.Line, "must be a mapping")
		return
	}
	c.pairs(n, p, func(k, v *yaml.Node, kp path) {
		c.leaf(k, t.Key(), kp)
		c.check(v, t.Elem(), kp)
	}, func(merged *yaml.Node) {
		c.dictionary(merged, t, p)
	})
}

// pairs calls each for every key and value of mapping n, after reporting
// non-string and duplicate keys, and merge for every mapping merged in with
// "<<" (whose keys may repeat n's: n's own keys override them).
func (c checker) pairs(n *yaml.Node, p path, each func(k, v *yaml.Node, kp path), merge func(*yaml.Node)) {
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == mergeTag {
			v = resolveAlias(v)
			if v.Kind == yaml.SequenceNode {
				for _, m := range v.Content {
					merge(resolveAlias(m))
				}
			} else {
				merge(v)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			c.probs.add(p, k.Line, "keys must be strings")
			continue
		}
		kp := p.key(k.Value)
		if first, dup := seen[k.Value]; dup {
			c.probs.add(kp, k.Line, "set twice, first on line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		each(k, v, kp)
	}
}

// leaf decodes n into a throwaway value of type t and reports why it does
// not fit, if it does not.
func (c checker) leaf(n *yaml.Node, t reflect.Type, p path) {
	err := n.Decode(reflect.New(t).Interface())
	if err == nil && isInteger(t) && n.ShortTag() != intTag {
		// yaml truncates 1.5 to 1 in an integer field; a surprise we refuse.
		err = &yaml.TypeError{}
	}
	if err != nil {
		c.probs.add(p, n.Line, "%s", leafMessage(err, t))
	}
}

// isInteger reports whether t is decoded by yaml as a plain integer.
func isInteger(t reflect.Type) bool {
	if t == durationType || reflect.PointerTo(t).Implements(unmarshalerType) ||
		reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// leafMessage explains a decoding error without quoting the value, which
// may be a secret that landed in the wrong field.
func leafMessage(err error, t reflect.Type) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// From an UnmarshalYAML or UnmarshalText method, ours or a
		// connector's; those promise not to quote values.
		return err.Error()
	}
	if t == durationType {
		return "must be a duration such as 90s or 2h"
	}
	switch t.Kind() {
	case reflect.String:
		return "must be a string"
	case reflect.Bool:
		return "must be true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "must be an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "must be a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "must be a number"
	default:
		return "does not fit a " + t.String()
	}
}

// quotedValue matches the value yaml quotes in "cannot unmarshal !!str
// `value` into int".
var quotedValue = regexp.MustCompile("(?s) `.*` into ")

// yamlErrorText returns err's text with any quoted value removed.
func yamlErrorText(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = quotedValue.ReplaceAllString(m, " into ")
	}
	return strings.Join(msgs, "; ")
}

// fieldsOf maps the YAML keys of struct type t to their field types,
// following yaml's rules: the tag name, else the lower-cased field name;
// "-" skipped; ",inline" structs flattened. An ",inline" map takes every
// other key; its element type is returned as inline.
func fieldsOf(t reflect.Type) (fields map[string]reflect.Type, inline reflect.Type) {
	fields = make(map[string]reflect.Type, t.NumField())
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Map:
				inline = ft.Elem()
			case reflect.Struct:
				sub, subInline := fieldsOf(ft)
				for k, v := range sub {
					fields[k] = v
				}
				if subInline != nil {
					inline = subInline
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields, inline
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag
}

// decode turns the expanded document root (nil for an empty file) into a
// Config, starting from Default, and reports what does not fit.
func decode(root *yaml.Node, platforms []string, probs *problems) *Config {
	cfg := Default()
	if root == nil || isNull(root) {
		return &cfg
	}
	if root.Kind != yaml.MappingNode {
		probs.add(path{}, root.Line, "the configuration must be a mapping of settings")
		return &cfg
	}
	// Connectors are decoded apart: their platform blocks stay raw, and
	// their paths take the "connectors[i] (id)" form.
	top := *root
	top.Content = nil
	var conns *yaml.Node
	connsLine := 0
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value != "connectors" {
			top.Content = append(top.Content, k, v)
			continue
		}
		if conns != nil {
			probs.add(path{rel: "connectors"}, k.Line, "set twice, first on line %d", connsLine)
			continue
		}
		conns, connsLine = v, k.Line
	}
	before := len(*probs)
	checker{probs}.check(&top, reflect.TypeFor[Config](), path{})
	if err := top.Decode(&cfg); err != nil && len(*probs) == before {
		probs.add(path{}, 0, "%s", yamlErrorText(err))
	}
	if conns != nil {
		cfg.Connectors = decodeConnectors(conns, platforms, probs)
	}
	return &cfg
}

func decodeConnectors(n *yaml.Node, platforms []string, probs *problems) []Connector {
	n = resolveAlias(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		probs.add(path{rel: "connectors"}, n.Line, "must be a list")
		return nil
	}
	out := make([]Connector, 0, len(n.Content))
	for i, item := range n.Content {
		out = append(out, decodeConnector(i, resolveAlias(item), platforms, probs))
	}
	return out
}

// decodeConnector decodes one connector item. It reports unknown keys and
// blocks for a platform other than the connector's; the rules on the
// values themselves, a missing block included, belong to validate.
// platforms are the names a block may have; with none known, the one key
// named after the connector's platform is its block.
func decodeConnector(i int, n *yaml.Node, platforms []string, probs *problems) Connector {
	c := Connector{Enabled: true}
	p := path{prefix: connectorLabel(i, rawID(n))}
	if n.Kind != yaml.MappingNode {
		probs.add(p, n.Line, "must be a mapping")
		return c
	}
	fields := map[string]any{"id": &c.ID, "platform": &c.Platform, "region": &c.Region, "enabled": &c.Enabled}
	type block struct {
		name  string
		key   *yaml.Node
		value *yaml.Node
	}
	var blocks []block
	chk := checker{probs}
	chk.pairs(n, p, func(k, v *yaml.Node, kp path) {
		if ptr, ok := fields[k.Value]; ok {
			before := len(*probs)
			chk.leaf(v, reflect.TypeOf(ptr).Elem(), kp)
			if len(*probs) == before {
				_ = v.Decode(ptr) // cannot fail: leaf just decoded the same node
			}
			return
		}
		blocks = append(blocks, block{k.Value, k, resolveAlias(v)})
	}, func(merged *yaml.Node) {
		// Merging into a connector would make its block ambiguous to read.
		probs.add(p, merged.Line, "<< merges are not supported in a connector")
	})
	platformKnown := c.Platform != "" && (platforms == nil || slices.Contains(platforms, c.Platform))
	for _, b := range blocks {
		bp := p.key(b.name)
		switch {
		case platforms == nil && b.name != c.Platform, platforms != nil && !slices.Contains(platforms, b.name):
			probs.add(p.key(b.name), b.key.Line, "unknown key")
		case !platformKnown:
			// The platform itself is reported; a block cannot be judged.
		case b.name != c.Platform:
			probs.add(bp, b.key.Line, "not allowed for platform %s (a connector has one block, named after its platform)", c.Platform)
		case isNull(b.value):
			c.Settings = &yaml.Node{Kind: yaml.MappingNode, Tag: mapTag, Line: b.value.Line, Column: b.value.Column}
		case b.value.Kind != yaml.MappingNode:
			probs.add(bp, b.value.Line, "must be a mapping")
		default:
			c.Settings = b.value
		}
	}
	return c
}
