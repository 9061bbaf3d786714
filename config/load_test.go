package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/internal/secret"
)

// envOf is a LookupEnv backed by a map, so tests never read or change the
// process environment.
func envOf(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// noEnv keeps a test independent of the machine's environment.
var noEnv = WithLookupEnv(envOf(nil))

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// problemStrings returns the problems in err, failing the test when err is
// not a *ValidationError.
func problemStrings(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v, want a *ValidationError", err)
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.String()
	}
	return out
}

func mustParse(t *testing.T, data string, opts ...Option) *Config {
	t.Helper()
	cfg, err := Parse([]byte(data), append([]Option{noEnv}, opts...)...)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestParseAppliesDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty input", nil},
		{"only a comment", fixture(t, "empty.yaml")},
		{"keys without values", []byte("log:\nnats:\n  embedded:\nhttp:\napi:\nconnectors:\n")},
		{"empty mappings", []byte("log: {}\nnats: {embedded: {}, tls: {}}\nhttp: {}\napi: {}\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(tc.data, noEnv)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if want := Default(); !reflect.DeepEqual(*cfg, want) {
				t.Errorf("got  %+v\nwant %+v", *cfg, want)
			}
		})
	}
}

func TestDefaultMatchesTheContract(t *testing.T) {
	d := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir", d.DataDir, "./parley-data"},
		{"log.level", d.Log.Level, "info"},
		{"log.format", d.Log.Format, "text"},
		{"nats.url", d.NATS.URL, ""},
		{"nats.replicas", d.NATS.Replicas, 1},
		{"nats.subject_prefix", d.NATS.SubjectPrefix, "parley"},
		{"nats.dedupe_window", d.NATS.DedupeWindow.Duration(), 2 * time.Hour},
		{"nats.event_max_age", d.NATS.EventMaxAge.Duration(), 168 * time.Hour},
		{"nats.ledger_ttl", d.NATS.LedgerTTL.Duration(), 30 * 24 * time.Hour},
		{"nats.embedded.sync", d.NATS.Embedded.Sync, "always"},
		{"http.listen", d.HTTP.Listen, "127.0.0.1:8080"},
		{"http.max_body_bytes", d.HTTP.MaxBodyBytes, int64(1048576)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if err := Validate(&d, nil); err != nil {
		t.Errorf("Validate(Default()) = %v", err)
	}
}

func TestParseDecodesEverySection(t *testing.T) {
	env := map[string]string{"NATS_TOKEN": "nt", "PARLEY_API_TOKEN": "at", "TELEGRAM_TOKEN": "tt", "FB_APP_SECRET": "fs"}
	cfg, err := Parse(fixture(t, "valid.yaml"), WithLookupEnv(envOf(env)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Default()
	want.DataDir = "/var/lib/parley"
	want.Log = Log{Level: "debug", Format: "json"}
	want.NATS.URL = "nats://n1:4222,nats://n2:4222"
	want.NATS.Token = "nt"
	want.NATS.Replicas = 3
	want.NATS.SubjectPrefix = "acme.parley"
	want.NATS.DedupeWindow = Duration(90 * time.Minute)
	want.NATS.EventMaxAge = Duration(14 * 24 * time.Hour)
	want.HTTP = HTTP{Listen: "127.0.0.1:9090", PublicURL: "https://parley.example.com", MaxBodyBytes: 2 << 20}
	want.API.Tokens = []secret.String{"at"}
	got := *cfg
	got.Connectors = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	if len(cfg.Connectors) != 2 {
		t.Fatalf("got %d connectors, want 2", len(cfg.Connectors))
	}
	fb := cfg.Connectors[1]
	if fb.ID != "fb-latam" || fb.Platform != "messenger" || fb.Region != "latam" || fb.Enabled {
		t.Errorf("connectors[1] = %+v", fb)
	}
	var s struct {
		AppSecret secret.String `yaml:"app_secret"`
		Pages     []struct {
			ID          string        `yaml:"id"`
			AccessToken secret.String `yaml:"access_token"`
		} `yaml:"pages"`
	}
	if err := fb.DecodeSettings(&s); err != nil {
		t.Fatalf("DecodeSettings: %v", err)
	}
	if s.AppSecret.Reveal() != "fs" || len(s.Pages) != 1 || s.Pages[0].ID != "42" ||
		s.Pages[0].AccessToken.Reveal() != "page-token-default" {
		t.Errorf("settings = %+v", s)
	}
}

func TestParseExpandsEnvironmentVariables(t *testing.T) {
	type settings struct {
		Token string `yaml:"token"`
		Mode  string `yaml:"mode"`
	}
	const connector = "connectors:\n  - id: a\n    platform: telegram\n    region: eu\n    enabled: ${ON}\n    telegram:\n      token: ${TOKEN}\n      mode: x-${MODE}\n"
	for _, tc := range []struct {
		name  string
		yaml  string
		env   map[string]string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "a whole value",
			yaml: "nats: {url: 'nats://h:4222', token: '${T}'}",
			env:  map[string]string{"T": "tok"},
			check: func(t *testing.T, c *Config) {
				if got := c.NATS.Token.Reveal(); got != "tok" {
					t.Errorf("token = %q", got)
				}
			},
		},
		{
			name: "part of a string",
			yaml: "http: {public_url: 'https://${HOST}/parley'}",
			env:  map[string]string{"HOST": "example.com"},
			check: func(t *testing.T, c *Config) {
				if got := c.HTTP.PublicURL; got != "https://example.com/parley" {
					t.Errorf("public_url = %q", got)
				}
			},
		},
		{
			name: "the default when unset",
			yaml: "data_dir: ${DIR:-/srv/parley}",
			check: func(t *testing.T, c *Config) {
				if c.DataDir != "/srv/parley" {
					t.Errorf("data_dir = %q", c.DataDir)
				}
			},
		},
		{
			name: "the default when empty",
			yaml: "data_dir: ${DIR:-/srv/parley}",
			env:  map[string]string{"DIR": ""},
			check: func(t *testing.T, c *Config) {
				if c.DataDir != "/srv/parley" {
					t.Errorf("data_dir = %q", c.DataDir)
				}
			},
		},
		{
			name: "the value over the default",
			yaml: "data_dir: ${DIR:-/srv/parley}",
			env:  map[string]string{"DIR": "/data"},
			check: func(t *testing.T, c *Config) {
				if c.DataDir != "/data" {
					t.Errorf("data_dir = %q", c.DataDir)
				}
			},
		},
		{
			name: "an empty value without default",
			yaml: "http: {public_url: '${URL}'}",
			env:  map[string]string{"URL": ""},
			check: func(t *testing.T, c *Config) {
				if c.HTTP.PublicURL != "" {
					t.Errorf("public_url = %q", c.HTTP.PublicURL)
				}
			},
		},
		{
			name: "not an escaped reference",
			yaml: "data_dir: '/srv/$${NOT_A_VAR}'",
			check: func(t *testing.T, c *Config) {
				if c.DataDir != "/srv/${NOT_A_VAR}" {
					t.Errorf("data_dir = %q", c.DataDir)
				}
			},
		},
		{
			name: "not a lone dollar",
			yaml: "api: {tokens: ['pa$word$', '$$x']}",
			check: func(t *testing.T, c *Config) {
				if !slices.Equal(c.API.Tokens, []secret.String{"pa$word$", "$$x"}) {
					t.Errorf("tokens differ")
				}
			},
		},
		{
			name: "a plain scalar into an integer",
			yaml: "nats:\n  url: nats://h:4222\n  replicas: ${R}\n",
			env:  map[string]string{"R": "3"},
			check: func(t *testing.T, c *Config) {
				if c.NATS.Replicas != 3 {
					t.Errorf("replicas = %d", c.NATS.Replicas)
				}
			},
		},
		{
			name: "a value that looks like null into a string",
			yaml: "data_dir: ${D}",
			env:  map[string]string{"D": "~"},
			check: func(t *testing.T, c *Config) {
				if c.DataDir != "~" {
					t.Errorf("data_dir = %q", c.DataDir)
				}
			},
		},
		{
			name: "a digits-only secret exactly",
			yaml: "api:\n  tokens:\n    - ${T}\n",
			env:  map[string]string{"T": "007"},
			check: func(t *testing.T, c *Config) {
				if c.API.Tokens[0].Reveal() != "007" {
					t.Errorf("token = %q", c.API.Tokens[0].Reveal())
				}
			},
		},
		{
			name: "inside a connector block",
			yaml: connector,
			env:  map[string]string{"ON": "false", "TOKEN": "123:abc", "MODE": "polling"},
			check: func(t *testing.T, c *Config) {
				if c.Connectors[0].Enabled {
					t.Error("enabled = true, want false from ${ON}")
				}
				var s settings
				if err := c.Connectors[0].DecodeSettings(&s); err != nil {
					t.Fatal(err)
				}
				if s != (settings{Token: "123:abc", Mode: "x-polling"}) {
					t.Errorf("settings = %+v", s)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, mustParse(t, tc.yaml, WithLookupEnv(envOf(tc.env))))
		})
	}
}

func TestParseNamesThePathOfAnUnsetVariable(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "top level",
			yaml: "nats:\n  url: nats://h:4222\n  token: ${NATS_TOKEN}\n",
			want: []string{"nats.token: environment variable NATS_TOKEN is not set (line 3)"},
		},
		{
			name: "in a list",
			yaml: "api:\n  tokens: [ok, '${A}-${B}']\n",
			want: []string{
				"api.tokens[1]: environment variable A is not set (line 2)",
				"api.tokens[1]: environment variable B is not set (line 2)",
			},
		},
		{
			name: "in a connector block",
			yaml: "connectors:\n  - id: tg-eu\n    platform: telegram\n    region: eu\n    telegram:\n      token: ${TELEGRAM_TOKEN}\n",
			want: []string{"connectors[0] (tg-eu): telegram.token: environment variable TELEGRAM_TOKEN is not set (line 6)"},
		},
		{
			name: "malformed references",
			yaml: "data_dir: '${1X}/${}/${OPEN'\n",
			want: []string{
				"data_dir: invalid environment variable reference ${1X} (line 1)",
				"data_dir: invalid environment variable reference ${} (line 1)",
				"data_dir: unterminated ${ (missing }) (line 1)",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), noEnv)
			if got := problemStrings(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestParseNeverQuotesAnExpandedValueInAnError(t *testing.T) {
	const secret = "hunter2-very-secret"
	_, err := Parse([]byte("nats:\n  replicas: ${NATS_TOKEN}\n  dedupe_window: ${NATS_TOKEN}\nlog:\n  level: '${X}'\n"),
		WithLookupEnv(envOf(map[string]string{"NATS_TOKEN": secret, "X": "debug"})))
	got := problemStrings(t, err)
	want := []string{
		"nats.replicas: must be an integer (line 2)",
		"nats.dedupe_window: must be a duration such as 90s, 2h or 7d (line 3)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error quotes the secret: %v", err)
	}
}

func TestLoadReadsFileKeysRelativeToTheConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secrets", "nats-token"), "s3cret\n")
	writeFile(t, filepath.Join(dir, "secrets", "bot-token"), "123:abc\r\n")
	cfgPath := filepath.Join(dir, "parley.yaml")
	writeFile(t, cfgPath, `
nats:
  url: nats://h:4222
  token_file: secrets/nats-token
connectors:
  - id: tg-eu
    platform: telegram
    region: eu
    telegram:
      token_file: ${SECRETS}/bot-token
      api_url: https://api.telegram.org
`)
	cfg, err := Load(cfgPath, WithLookupEnv(envOf(map[string]string{"SECRETS": filepath.Join(dir, "secrets")})))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.NATS.Token.Reveal(); got != "s3cret" {
		t.Errorf("nats.token = %q, want s3cret", got)
	}
	var s struct {
		Token  secret.String `yaml:"token"`
		APIURL string        `yaml:"api_url"`
	}
	if err := cfg.Connectors[0].DecodeSettings(&s); err != nil {
		t.Fatalf("DecodeSettings: %v", err)
	}
	if s.Token.Reveal() != "123:abc" {
		t.Errorf("telegram.token = %q, want 123:abc", s.Token.Reveal())
	}
}

func TestParseReadsFileKeysAsIfWrittenInPlace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		content string
		check   func(t *testing.T, c *Config)
	}{
		{"without a final newline", "nats: {url: 'nats://h:4222', token_file: f}", "tok", tokenIs("tok")},
		{"dropping one final newline", "nats: {url: 'nats://h:4222', token_file: f}", "tok\n", tokenIs("tok")},
		{"dropping one final CRLF", "nats: {url: 'nats://h:4222', token_file: f}", "tok\r\n", tokenIs("tok")},
		{"keeping a second final newline", "nats: {url: 'nats://h:4222', token_file: f}", "tok\n\n", tokenIs("tok\n")},
		{"keeping other whitespace", "nats: {url: 'nats://h:4222', token_file: f}", " tok ", tokenIs(" tok ")},
		{"keeping leading zeros", "nats: {url: 'nats://h:4222', token_file: f}", "007\n", tokenIs("007")},
		{"into an integer", "nats: {url: 'nats://h:4222', replicas_file: f}", "3\n", func(t *testing.T, c *Config) {
			if c.NATS.Replicas != 3 {
				t.Errorf("replicas = %d, want 3", c.NATS.Replicas)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(name string) ([]byte, error) {
				if want := filepath.Join("/etc/parley", "f"); name != want {
					t.Errorf("read %q, want %q", name, want)
				}
				return []byte(tc.content), nil
			}
			tc.check(t, mustParse(t, tc.yaml, WithReadFile(read), WithBaseDir("/etc/parley")))
		})
	}
}

func tokenIs(want string) func(t *testing.T, c *Config) {
	return func(t *testing.T, c *Config) {
		t.Helper()
		if got := c.NATS.Token.Reveal(); got != want {
			t.Errorf("token = %q, want %q", got, want)
		}
	}
}

func TestParseRejectsFileKeyProblems(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "both the key and its file key",
			yaml: "nats:\n  url: nats://h:4222\n  token: abc\n  token_file: /run/secrets/token\n",
			want: []string{"nats.token: both token and token_file are set; use one (line 4)"},
		},
		{
			name: "both inside a connector block",
			yaml: "connectors:\n  - id: tg-eu\n    platform: telegram\n    region: eu\n    telegram:\n      token_file: t\n      token: abc\n",
			want: []string{"connectors[0] (tg-eu): telegram.token: both token and token_file are set; use one (line 6)"},
		},
		{
			name: "a missing file",
			yaml: "nats:\n  url: nats://h:4222\n  token_file: missing\n",
			want: []string{"nats.token_file: reading file: open " + filepath.Join(dir, "missing") + ": no such file or directory (line 3)"},
		},
		{
			name: "a file key that is not a path",
			yaml: "nats:\n  url: nats://h:4222\n  token_file: [a, b]\n",
			want: []string{"nats.token_file: must be a file path (line 3)"},
		},
		{
			name: "a file path from an unset variable",
			yaml: "nats:\n  url: nats://h:4222\n  token_file: ${DIR}/token\n",
			want: []string{"nats.token_file: environment variable DIR is not set (line 3)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), noEnv, WithBaseDir(dir))
			if got := problemStrings(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestParseLeavesFilePathKeysAlone(t *testing.T) {
	read := func(name string) ([]byte, error) {
		t.Errorf("read %q: keys that name files for NATS must not be read", name)
		return nil, errors.New("unexpected read")
	}
	cfg := mustParse(t, `
nats:
  url: tls://h:4222
  credentials_file: /etc/parley/nats.creds
  tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}
`, WithReadFile(read))
	if cfg.NATS.CredentialsFile != "/etc/parley/nats.creds" {
		t.Errorf("credentials_file = %q", cfg.NATS.CredentialsFile)
	}
	if cfg.NATS.TLS != (TLS{CAFile: "ca.pem", CertFile: "client.pem", KeyFile: "client-key.pem"}) {
		t.Errorf("tls = %+v", cfg.NATS.TLS)
	}
}

// TestPathKeysListEveryFileField fails when a Config field whose key ends
// in _file is added without telling the X_file rule to leave it alone.
func TestPathKeysListEveryFileField(t *testing.T) {
	var found []string
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		fields, _ := fieldsOf(typ)
		for name, ft := range fields {
			key := prefix + name
			if strings.HasSuffix(name, fileSuffix) {
				found = append(found, key)
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, key+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	var listed []string
	for k := range pathKeys {
		listed = append(listed, k)
	}
	slices.Sort(found)
	slices.Sort(listed)
	if !slices.Equal(found, listed) {
		t.Errorf("Config keys ending in _file: %v; pathKeys: %v", found, listed)
	}
}

func TestParseRejectsUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want []string
	}{
		{"at the top level", fixture(t, "unknown_top.yaml"), []string{"datadir: unknown key (line 2)"}},
		{"inside nats", fixture(t, "unknown_nats.yaml"), []string{
			"nats.subject_prefx: unknown key (line 3)",
			"nats.tls.ca: unknown key (line 5)",
		}},
		{"on a connector", []byte("connectors:\n  - {id: a, platform: slack, region: us, slack: {}, colour: red}\n"), []string{
			"connectors[0] (a): colour: unknown key (line 2)",
		}},
		{"repeated", []byte("log:\n  level: info\n  level: debug\n"), []string{
			"log.level: set twice, first on line 2 (line 3)",
		}},
		{"through a merge", []byte("base: &b {level: info, lvl: x}\nlog:\n  <<: *b\n"), []string{
			"base: unknown key (line 1)",
			"log.lvl: unknown key (line 1)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data, noEnv)
			if got := problemStrings(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestParseRejectsValuesOfTheWrongShape(t *testing.T) {
	_, err := Parse([]byte(`
log: text
nats:
  replicas: three
  embedded: [a]
http:
  max_body_bytes: 1.5
api:
  tokens: abc
connectors:
  - id: a
    platform: slack
    region: us
    enabled: yes please
    slack: {}
`), noEnv)
	want := []string{
		"log: must be a mapping (line 2)",
		"nats.replicas: must be an integer (line 4)",
		"nats.embedded: must be a mapping (line 5)",
		"http.max_body_bytes: must be an integer (line 7)",
		"api.tokens: must be a list (line 9)",
		"connectors[0] (a): enabled: must be true or false (line 14)",
	}
	if got := problemStrings(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse(fixture(t, "three_problems.yaml"), noEnv)
	want := []string{
		"api.tokens[0]: environment variable UNSET_TOKEN is not set (line 9)",
		"nats.colour: unknown key (line 7)",
		`log.level: must be one of debug, info, warn, error (got "verbose")`,
	}
	if got := problemStrings(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("Error() = %q, want one problem per line", got)
	}
}

func TestParseRejectsMalformedYAML(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad syntax", "nats: [\n", "invalid YAML: line 1: did not find expected node content"},
		{"two documents", "log: {}\n---\nhttp: {}\n", "invalid YAML: the file must hold exactly one document"},
		{"not a mapping", "- a\n- b\n", "the configuration must be a mapping of settings (line 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), noEnv)
			if got := problemStrings(t, err); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("problems = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoadReportsAnUnreadableFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error = %v, want one wrapping os.ErrNotExist", err)
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		t.Errorf("an unreadable file is not a *ValidationError")
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
