package kit

import (
	"errors"
	"regexp"
	"strings"

	"github.com/parley-gateway/parley/connectors"
)

// Validate checks a platform block without building a connector: it
// decodes raw into S strictly and then runs resolve on what decoded, so
// that an unknown key and an invalid value are reported together. Paths
// are relative to the block. It is a Descriptor's Validate.
func Validate[S any](raw connectors.Settings, resolve func(S) []connectors.Problem) []connectors.Problem {
	var s S
	var problems []connectors.Problem
	if raw != nil {
		if err := raw.DecodeSettings(&s); err != nil {
			problems = DecodeProblems(err)
		}
	}
	decoded := make(map[string]bool, len(problems))
	for _, q := range problems {
		decoded[q.Path] = true
	}
	for _, p := range resolve(s) {
		// A value the decoder reported is not reported again; a problem of
		// the whole block (no path) is never a duplicate of another.
		if p.Path == "" || !decoded[p.Path] {
			problems = append(problems, p)
		}
	}
	return problems
}

// problemPath recognises the "path: message" lines of a decoding error.
var problemPath = regexp.MustCompile(`^([A-Za-z0-9_]+(\[[0-9]+\])*(\.[A-Za-z0-9_]+(\[[0-9]+\])*)*): (.+)$`)

// DecodeProblems turns a decoding error into problems, one per line, with
// the path when the line starts with one.
func DecodeProblems(err error) []connectors.Problem {
	var out []connectors.Problem
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := problemPath.FindStringSubmatch(line); m != nil {
			out = append(out, connectors.Problem{Path: m[1], Message: m[len(m)-1]})
			continue
		}
		out = append(out, connectors.Problem{Message: line})
	}
	return out
}

// ProblemsError renders problems as one error per problem, joined, each
// "path: message" relative to the block so that the caller can prefix the
// block's path. It is nil when there are none.
func ProblemsError(problems []connectors.Problem) error {
	errs := make([]error, 0, len(problems))
	for _, p := range problems {
		if p.Path == "" {
			errs = append(errs, errors.New(p.Message))
			continue
		}
		errs = append(errs, errors.New(p.Path+": "+p.Message))
	}
	return errors.Join(errs...)
}

// Decode decodes raw strictly into S and resolves it, for a Descriptor's
// New: a decoding error is returned as is (the config loader's errors carry
// their own paths), problems as ProblemsError.
func Decode[S, R any](raw connectors.Settings, resolve func(S) (R, []connectors.Problem)) (R, error) {
	var s S
	var zero R
	if raw != nil {
		if err := raw.DecodeSettings(&s); err != nil {
			return zero, err
		}
	}
	r, problems := resolve(s)
	if len(problems) > 0 {
		return zero, ProblemsError(problems)
	}
	return r, nil
}
