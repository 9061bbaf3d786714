package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path locates the value: "nats.replicas", "api.tokens[0]",
	// "connectors[1] (fb-latam): messenger.app_secret". Inside a
	// connector's platform block, as returned by DecodeSettings or a
	// SettingsCheck, it is relative to the block: "pages[0].id".
	Path string
	// Message says what is wrong ("required", "unknown key"). It never
	// contains a secret value.
	Message string
	// Line is the line in the YAML file, or 0 when the problem is about a
	// decoded value rather than a place in the file.
	Line int
}

// String formats the problem as "path: message", with " (line N)" when the
// line is known.
func (p Problem) String() string {
	var b strings.Builder
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	if p.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", p.Line)
	}
	return b.String()
}

// maxPrintedProblems bounds the lines of ValidationError.Error. A file
// with thousands of problems has a few mistakes repeated (a list pasted in
// the wrong place, a block copied to every connector): the first hundred
// show them, and a terminal or a log line does not drown in the rest.
const maxPrintedProblems = 100

// ValidationError lists every problem found in a configuration. Callers get
// it with errors.As to print or inspect the problems one by one.
type ValidationError struct {
	// Problems holds every problem, however many Error prints.
	Problems []Problem
}

// Error returns the problems one per line: the first maxPrintedProblems,
// then a line counting the rest.
func (e *ValidationError) Error() string {
	shown := e.Problems[:min(len(e.Problems), maxPrintedProblems)]
	lines := make([]string, len(shown), len(shown)+1)
	for i, p := range shown {
		lines[i] = p.String()
	}
	switch rest := len(e.Problems) - len(shown); {
	case rest == 1:
		lines = append(lines, "… and 1 more problem")
	case rest > 1:
		lines = append(lines, fmt.Sprintf("… and %d more problems", rest))
	}
	return strings.Join(lines, "\n")
}

// ProblemsOf turns an error into problems, for a SettingsCheck that calls a
// connector's constructor or validation. Each error joined in err
// (errors.Join) is turned on its own; the problems of a *ValidationError in
// an error's chain, as DecodeSettings returns, keep their paths; any other
// error becomes one problem with no path, reported at the platform block
// itself. A nil err yields no problems.
func ProblemsOf(err error) []Problem {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []Problem
		for _, e := range joined.Unwrap() {
			out = append(out, ProblemsOf(e)...)
		}
		return out
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Problems
	}
	return []Problem{{Message: err.Error()}}
}

// path builds Problem paths. Inside a connector, prefix is the connector's
// label ("connectors[1] (fb-latam)") and rel the path below it; elsewhere
// prefix is empty.
type path struct {
	prefix string
	rel    string
}

func (p path) key(k string) path {
	if p.rel == "" {
		return path{p.prefix, k}
	}
	return path{p.prefix, p.rel + "." + k}
}

func (p path) index(i int) path {
	return path{p.prefix, p.rel + "[" + strconv.Itoa(i) + "]"}
}

func (p path) String() string {
	switch {
	case p.prefix == "":
		return p.rel
	case p.rel == "":
		return p.prefix
	default:
		return p.prefix + ": " + p.rel
	}
}

// connectorLabel is the path prefix of connectors[i]. The id is shown only
// when it is valid, so a garbled id cannot garble every path of its
// connector; the id problem itself is reported under "id".
func connectorLabel(i int, id string) string {
	label := "connectors[" + strconv.Itoa(i) + "]"
	if idPattern.MatchString(id) {
		label += " (" + id + ")"
	}
	return label
}

// problems collects Problems in the order they are found.
type problems []Problem

func (ps *problems) add(p path, line int, format string, args ...any) {
	*ps = append(*ps, Problem{Path: p.String(), Message: fmt.Sprintf(format, args...), Line: line})
}

// addTop adds a problem at a top-level path such as "nats.replicas", about
// a decoded value (so without a line).
func (ps *problems) addTop(rel, format string, args ...any) {
	ps.add(path{rel: rel}, 0, format, args...)
}

// err returns the collected problems as a *ValidationError, or nil.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps}
}

// coverage holds the paths of the problems found by expansion and
// decoding. Validation runs on values that failed to expand or decode (they
// keep their default or are left empty); skipping the paths these cover
// reports each mistake once.
type coverage map[string]bool

func (ps problems) coverage() coverage {
	c := make(coverage, len(ps))
	for _, q := range ps {
		c[q.Path] = true
	}
	return c
}

// covers reports whether a problem was found at path p or at a value that
// contains it. It looks up p's own ancestors rather than comparing p with
// every problem found, so that a file with many problems of both kinds is
// not checked in quadratic time.
func (c coverage) covers(p string) bool {
	// A problem with "token_file" (say, a missing file) covers "token".
	if c[p] || c[p+fileSuffix] {
		return true
	}
	for i := range len(p) {
		if (p[i] == '.' || p[i] == '[' || strings.HasPrefix(p[i:], ": ")) && c[p[:i]] {
			return true
		}
	}
	return false
}
