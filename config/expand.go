package config

import (
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fileSuffix marks a key whose value names a file holding the value of the
// key without the suffix.
const fileSuffix = "_file"

// pathKeys are the top-level keys that end in _file but are themselves file
// paths, read later by the NATS client: the X_file rule must leave them
// alone. TestPathKeysListEveryFileField keeps this list in step with the
// Config types. Inside connector blocks there are no exceptions: a
// connector's settings type must not have a key ending in _file.
var pathKeys = map[string]bool{
	"nats.credentials_file": true,
	"nats.nkey_seed_file":   true,
	"nats.tls.ca_file":      true,
	"nats.tls.cert_file":    true,
	"nats.tls.key_file":     true,
}

// expander applies the ${ENV_VAR} and X_file rules to a node tree in place.
type expander struct {
	lookupEnv func(string) (string, bool)
	readFile  func(string) ([]byte, error)
	baseDir   string
	probs     *problems
}

func (e *expander) node(n *yaml.Node, p path) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			e.node(c, p)
		}
	case yaml.MappingNode:
		e.mapping(n, p)
	case yaml.SequenceNode:
		for i, item := range n.Content {
			itemPath := p.index(i)
			if p == (path{rel: "connectors"}) {
				// Label with the id as it will be after expansion, as
				// decoding and validation will.
				id := rawID(item)
				if expanded, errs := expandEnv(id, e.lookupEnv); len(errs) == 0 {
					id = expanded
				}
				itemPath = path{prefix: connectorLabel(i, id)}
			}
			e.node(item, itemPath)
		}
	case yaml.ScalarNode:
		e.scalar(n, p)
	case yaml.AliasNode:
		// The anchored node is expanded where it is defined.
	}
}

func (e *expander) mapping(n *yaml.Node, p path) {
	keys := make(map[string]bool, len(n.Content)/2)
	for i := 0; i < len(n.Content); i += 2 {
		keys[n.Content[i].Value] = true
	}
	var kept []*yaml.Node
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := p.key(k.Value)
		if k.ShortTag() == mergeTag {
			kp = p
		}
		base, isFile := strings.CutSuffix(k.Value, fileSuffix)
		if !isFile || base == "" || k.Kind != yaml.ScalarNode || (p.prefix == "" && pathKeys[kp.rel]) {
			e.node(v, kp)
			kept = append(kept, k, v)
			continue
		}
		if keys[base] {
			// Dropping the pair keeps the decoder from also calling the
			// X_file key unknown.
			e.probs.add(p.key(base), k.Line, "both %s and %s are set; use one", base, k.Value)
			continue
		}
		// On failure the key is kept under its base name with an empty
		// value, so that decoding accepts it and validation does not add
		// "required" to the problem already reported.
		content, ok := e.readValueFile(v, kp)
		k.Value = base
		*v = yaml.Node{Kind: yaml.ScalarNode, Tag: strTag, Value: content, Line: v.Line, Column: v.Column}
		if ok {
			retag(v)
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
}

// readValueFile reads the file named by the X_file value v. The value may
// itself use ${ENV_VAR}; a relative path is relative to the config file.
func (e *expander) readValueFile(v *yaml.Node, p path) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != strTag || v.Value == "" {
		e.probs.add(p, v.Line, "must be a file path")
		return "", false
	}
	before := len(*e.probs)
	e.scalar(v, p)
	if len(*e.probs) > before {
		return "", false
	}
	name := v.Value
	if !filepath.IsAbs(name) {
		name = filepath.Join(e.baseDir, name)
	}
	data, err := e.readFile(name)
	if err != nil {
		// The error names the file, which is not secret; the contents are.
		e.probs.add(p, v.Line, "reading file: %v", err)
		return "", false
	}
	s := string(data)
	// Editors and "echo >" end files with a newline that is not part of
	// the secret; any other whitespace is kept, as the file may mean it.
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	return s, true
}

// scalar expands ${ENV_VAR} references in a string scalar.
func (e *expander) scalar(n *yaml.Node, p path) {
	if n.ShortTag() != strTag || !strings.Contains(n.Value, "$") {
		return
	}
	out, errs := expandEnv(n.Value, e.lookupEnv)
	for _, msg := range errs {
		e.probs.add(p, n.Line, "%s", msg)
	}
	if len(errs) > 0 {
		// Never let a half-expanded "${VAR}" through as a real value.
		n.Value = ""
		n.Tag = strTag
		return
	}
	n.Value = out
	if n.Style == 0 {
		retag(n)
	}
}

// retag gives an unquoted scalar whose text was just substituted the type
// that text would have had if written in place: "replicas: ${REPLICAS}" and
// "replicas_file: r" decode as integers. Any text that is not an integer, a
// number or a boolean — "null" and "~" included — stays a string, and
// strings and Secrets accept every scalar as written, so a token made of
// digits keeps its leading zeros.
func retag(n *yaml.Node) {
	n.Tag = ""
	switch n.ShortTag() {
	case intTag, floatTag, boolTag:
	default:
		n.Tag = strTag
	}
}

// rawID returns the id written in a connector item, for its label.
func rawID(item *yaml.Node) string {
	if item.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(item.Content); i += 2 {
		if item.Content[i].Value == "id" {
			return item.Content[i+1].Value
		}
	}
	return ""
}

// expandEnv replaces ${NAME} and ${NAME:-default} in s. The default is
// used when NAME is unset or empty, as in the shell. "$${" is a literal
// "${"; any other "$" is kept as is, so passwords containing "$" need no
// escaping. The returned messages name variables, never values.
func expandEnv(s string, lookup func(string) (string, bool)) (string, []string) {
	var b strings.Builder
	var errs []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '$' {
			// s[:i] ends with the escaping "$", which stays as the literal one.
			b.WriteString(s[:i])
			b.WriteString("{")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			errs = append(errs, "unterminated ${ (missing })")
			break
		}
		ref := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			errs = append(errs, "invalid environment variable reference ${"+ref+"}")
			continue
		}
		v, ok := lookup(name)
		switch {
		case ok && v != "":
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		case ok:
			// Set but empty, without a default: the empty string is what
			// the operator asked for; validation decides if it is allowed.
		default:
			errs = append(errs, "environment variable "+name+" is not set")
		}
	}
	return b.String(), errs
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
