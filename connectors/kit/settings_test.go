package kit_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
)

// block is a platform's settings as a test decodes them.
type block struct {
	Token string
	Mode  string
}

// decoded is a connectors.Settings that decodes to a fixed block and
// fails with err, as Parley's config loader decodes what fits and reports
// the rest.
type decoded struct {
	block block
	err   error
}

func (d decoded) DecodeSettings(v any) error {
	*v.(*block) = d.block
	return d.err
}

// resolveBlock requires a token and a known mode.
func resolveBlock(b block) (string, []connectors.Problem) {
	var problems []connectors.Problem
	if b.Token == "" {
		problems = append(problems, connectors.Problem{Path: "token", Message: "required"})
	}
	if b.Mode != "" && b.Mode != "polling" {
		problems = append(problems, connectors.Problem{Path: "mode", Message: `must be "polling"`})
	}
	return b.Token, problems
}

func validateBlock(b block) []connectors.Problem {
	_, problems := resolveBlock(b)
	return problems
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name    string
		raw     connectors.Settings
		resolve func(block) []connectors.Problem
		want    []connectors.Problem
	}{
		{
			name:    "no settings are validated as the zero block",
			resolve: validateBlock,
			want:    []connectors.Problem{{Path: "token", Message: "required"}},
		},
		{
			name:    "a block that decodes has only the resolver's problems",
			raw:     decoded{block: block{Mode: "webhook"}},
			resolve: validateBlock,
			want:    []connectors.Problem{{Path: "token", Message: "required"}, {Path: "mode", Message: `must be "polling"`}},
		},
		{
			name:    "a valid block has no problems",
			raw:     decoded{block: block{Token: "7001:x"}},
			resolve: validateBlock,
		},
		{
			name:    "decoding and resolving problems are reported together, decoding first, with their paths",
			raw:     decoded{block: block{Mode: "webhook"}, err: errors.New("bogus: unknown key (line 3)\nretries[1]: must be a duration (line 5)")},
			resolve: validateBlock,
			want: []connectors.Problem{
				{Path: "bogus", Message: "unknown key (line 3)"},
				{Path: "retries[1]", Message: "must be a duration (line 5)"},
				{Path: "token", Message: "required"},
				{Path: "mode", Message: `must be "polling"`},
			},
		},
		{
			name:    "a path the decoder reported is not reported again by the resolver",
			raw:     decoded{err: errors.New("token: must be a string (line 2)")},
			resolve: validateBlock,
			want:    []connectors.Problem{{Path: "token", Message: "must be a string (line 2)"}},
		},
		{
			name: "a problem of the whole block is kept beside a decoding problem of the whole block",
			raw:  decoded{block: block{Token: "7001:x"}, err: errors.New("must be a mapping")},
			resolve: func(block) []connectors.Problem {
				return []connectors.Problem{{Message: "set either token or token_file"}}
			},
			want: []connectors.Problem{{Message: "must be a mapping"}, {Message: "set either token or token_file"}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := kit.Validate(tt.raw, tt.resolve); !slices.Equal(got, tt.want) {
				t.Errorf("Validate =\n %v\nwant\n %v", got, tt.want)
			}
		})
	}
}

func TestDecodeProblems(t *testing.T) {
	err := errors.New("bot_token: unknown key (line 2)\n  pages[0].access_token: required  \n\nmust be a mapping\ndecoding settings: yaml: line 4: did not find expected key")
	want := []connectors.Problem{
		{Path: "bot_token", Message: "unknown key (line 2)"},
		{Path: "pages[0].access_token", Message: "required"},
		{Message: "must be a mapping"},
		{Message: "decoding settings: yaml: line 4: did not find expected key"},
	}
	if got := kit.DecodeProblems(err); !slices.Equal(got, want) {
		t.Errorf("DecodeProblems =\n %v\nwant\n %v", got, want)
	}
}

func TestProblemsError(t *testing.T) {
	for _, tt := range []struct {
		name     string
		problems []connectors.Problem
		want     string // "" for a nil error
	}{
		{"no problems are no error", nil, ""},
		{"each problem is one line, prefixed with its path when it has one",
			[]connectors.Problem{{Path: "token", Message: "required"}, {Message: "must be a mapping"}},
			"token: required\nmust be a mapping"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := kit.ProblemsError(tt.problems)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("ProblemsError = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("ProblemsError = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestProblemsErrorRoundTripsThroughDecodeProblems(t *testing.T) {
	problems := []connectors.Problem{{Path: "accounts[1].token", Message: "required"}, {Message: "must be a mapping"}}
	if got := kit.DecodeProblems(kit.ProblemsError(problems)); !slices.Equal(got, problems) {
		t.Errorf("DecodeProblems(ProblemsError(p)) = %v, want %v", got, problems)
	}
}

func TestDecode(t *testing.T) {
	syntax := errors.New("bogus: unknown key (line 3)")
	for _, tt := range []struct {
		name    string
		raw     connectors.Settings
		want    string
		wantErr string // the error's text; "" for none
		isErr   error  // an error Decode's must be
	}{
		{name: "a valid block resolves", raw: decoded{block: block{Token: "7001:x"}}, want: "7001:x"},
		{name: "no settings resolve as the zero block", wantErr: "token: required"},
		{name: "a decoding error is returned as is, before resolving", raw: decoded{block: block{Mode: "webhook"}, err: syntax},
			wantErr: syntax.Error(), isErr: syntax},
		{name: "every resolving problem is in the error with its path", raw: decoded{block: block{Mode: "webhook"}},
			wantErr: "token: required\nmode: must be \"polling\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kit.Decode(tt.raw, resolveBlock)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("Decode = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Decode error = %v, want %q", err, tt.wantErr)
			}
			if tt.isErr != nil && !errors.Is(err, tt.isErr) {
				t.Errorf("Decode error = %v, want the decoder's own error", err)
			}
			if got != "" {
				t.Errorf("Decode = %q with an error, want the zero value", got)
			}
		})
	}
}
