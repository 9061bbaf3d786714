package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Option changes how Parse and Load read a configuration. The defaults use
// the process environment and file system; tests inject their own instead
// of touching global state.
type Option func(*options)

type options struct {
	lookupEnv func(string) (string, bool)
	readFile  func(string) ([]byte, error)
	baseDir   string
	check     SettingsCheck
	platforms []string
}

// WithLookupEnv sets how ${ENV_VAR} references are resolved (default
// os.LookupEnv).
func WithLookupEnv(lookup func(name string) (string, bool)) Option {
	return func(o *options) { o.lookupEnv = lookup }
}

// WithReadFile sets how X_file values are read (default os.ReadFile). It
// receives the path already joined with the base directory.
func WithReadFile(read func(name string) ([]byte, error)) Option {
	return func(o *options) { o.readFile = read }
}

// WithBaseDir sets the directory that relative X_file paths are relative
// to. Parse defaults to the working directory; Load to the directory of the
// configuration file.
func WithBaseDir(dir string) Option {
	return func(o *options) { o.baseDir = dir }
}

// WithSettingsCheck adds the check of each connector's platform block to
// validation, so that one error lists every problem in the file.
func WithSettingsCheck(check SettingsCheck) Option {
	return func(o *options) { o.check = check }
}

// WithPlatforms names the platforms a connector may have (those built into
// the binary). Without it any platform name is accepted here and the
// SettingsCheck decides; with it an unknown platform is reported with the
// list, and a block named after another known platform is told apart from
// an unknown key.
func WithPlatforms(names []string) Option {
	return func(o *options) { o.platforms = names }
}

// Bounds of what Load reads: a configuration is a few KB and a secret a
// few hundred bytes, so these only stop a mistake (token_file: /dev/zero,
// a log file named by accident) from reading for ever.
const (
	MaxConfigBytes     = 16 << 20
	MaxSecretFileBytes = 1 << 20
)

// readBounded reads a file of at most limit bytes.
func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return data, nil
}

// Load reads the configuration file at path and parses it with Parse;
// relative X_file paths are relative to the file's directory. A problem
// with the contents is a *ValidationError; any other error (such as an
// unreadable file) is not.
func Load(path string, opts ...Option) (*Config, error) {
	data, err := readBounded(path, MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	opts = append([]Option{WithBaseDir(filepath.Dir(path))}, opts...)
	return Parse(data, opts...)
}

// Parse expands, decodes and validates a YAML configuration. An empty
// document yields Default(). On any problem, from YAML syntax to a
// connector's settings, it returns a nil Config and a *ValidationError
// listing every problem found, except that a document whose YAML aliases
// expand past maxAliasNodes or maxAliasBytes is refused with that one
// problem and checked no further.
func Parse(data []byte, opts ...Option) (*Config, error) {
	o := options{lookupEnv: os.LookupEnv, readFile: func(name string) ([]byte, error) { return readBounded(name, MaxSecretFileBytes) }, baseDir: "."}
	for _, opt := range opts {
		opt(&o)
	}
	root, err := parseYAML(data)
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{{Message: err.Error()}}}
	}
	// Before anything follows an alias: past the bound, checking the rest
	// would cost what the bound is there to prevent.
	if root != nil {
		if p := checkAliases(root); p != nil {
			return nil, &ValidationError{Problems: []Problem{*p}}
		}
	}

	var probs problems
	if root != nil {
		e := expander{lookupEnv: o.lookupEnv, readFile: o.readFile, baseDir: o.baseDir, probs: &probs}
		e.node(root, path{})
	}
	cfg := decode(root, o.platforms, &probs)

	// Values that failed to expand or decode hold a default or nothing;
	// validating them again would report one mistake twice.
	found := probs.coverage()
	var checked problems
	validate(cfg, o.platforms, o.check, &checked)
	for _, q := range checked {
		if !found.covers(q.Path) {
			probs = append(probs, q)
		}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseYAML returns the root node of the single document in data, or nil
// when there is none.
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid YAML: the file must hold exactly one document")
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}
