package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/internal/secret"
)

func TestValidateTopLevel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"the defaults", func(c *Config) {}, nil},
		{"no API tokens, which disables /v1", func(c *Config) { c.API.Tokens = nil }, nil},
		{"a cluster with three replicas", func(c *Config) { c.NATS.URL = "nats://a:4222, nats://b:4222"; c.NATS.Replicas = 3 }, nil},
		{"no data_dir", func(c *Config) { c.DataDir = "" }, []string{"data_dir: required"}},
		{"an unknown log level", func(c *Config) { c.Log.Level = "verbose" }, []string{
			`log.level: must be one of debug, info, warn, error (got "verbose")`,
		}},
		{"an unknown log format", func(c *Config) { c.Log.Format = "xml" }, []string{
			`log.format: must be one of text, json (got "xml")`,
		}},
		{"replicas below 1", func(c *Config) { c.NATS.URL = "nats://h:4222"; c.NATS.Replicas = 0 }, []string{
			"nats.replicas: must be between 1 and 5",
		}},
		{"replicas above 5", func(c *Config) { c.NATS.URL = "nats://h:4222"; c.NATS.Replicas = 6 }, []string{
			"nats.replicas: must be between 1 and 5",
		}},
		{"replicas on the embedded server", func(c *Config) { c.NATS.Replicas = 3 }, []string{
			"nats.replicas: must be 1 with the embedded server (nats.url empty)",
		}},
		{"a NATS URL that is not one", func(c *Config) { c.NATS.URL = "nats://user:pw@h:4222,http://h:80" }, []string{
			"nats.url: must be a comma-separated list of URLs such as nats://host:4222",
		}},
		{"two ways to authenticate", func(c *Config) { c.NATS.Token = "t"; c.NATS.CredentialsFile = "c.creds" }, []string{
			"nats: set only one of credentials_file, user/password, token, nkey_seed_file (got credentials_file, token)",
		}},
		{"a user without password", func(c *Config) { c.NATS.User = "parley" }, []string{"nats.password: required with nats.user"}},
		{"a password without user", func(c *Config) { c.NATS.Password = "pw" }, []string{"nats.user: required with nats.password"}},
		{"a certificate without key", func(c *Config) { c.NATS.TLS.CertFile = "c.pem" }, []string{
			"nats.tls.key_file: required with nats.tls.cert_file",
		}},
		{"a wildcard in the subject prefix", func(c *Config) { c.NATS.SubjectPrefix = "parley.*" }, []string{
			"nats.subject_prefix: must be dot-separated tokens of letters, digits, - and _",
		}},
		{"an empty subject prefix", func(c *Config) { c.NATS.SubjectPrefix = "" }, []string{
			"nats.subject_prefix: must be dot-separated tokens of letters, digits, - and _",
		}},
		{"a dedupe window under 100ms", func(c *Config) { c.NATS.DedupeWindow = Duration(50 * time.Millisecond) }, []string{
			"nats.dedupe_window: must be between 100ms and nats.event_max_age (168h0m0s)",
		}},
		{"a dedupe window over the event age", func(c *Config) { c.NATS.EventMaxAge = Duration(time.Hour) }, []string{
			"nats.dedupe_window: must be between 100ms and nats.event_max_age (1h0m0s)",
		}},
		{"no event age", func(c *Config) { c.NATS.EventMaxAge = 0 }, []string{"nats.event_max_age: must be positive"}},
		{"an embedded listen address without port", func(c *Config) { c.NATS.Embedded.Listen = "127.0.0.1" }, []string{
			"nats.embedded.listen: must be host:port, such as 127.0.0.1:4222",
		}},
		{"an unknown sync policy", func(c *Config) { c.NATS.Embedded.Sync = "never" }, []string{
			`nats.embedded.sync: must be one of always, interval (got "never")`,
		}},
		{"no HTTP listen address", func(c *Config) { c.HTTP.Listen = "" }, []string{"http.listen: required"}},
		{"an HTTP listen address with a named port", func(c *Config) { c.HTTP.Listen = "localhost:http" }, []string{
			"http.listen: must be host:port, such as 127.0.0.1:8080",
		}},
		{"a relative public URL", func(c *Config) { c.HTTP.PublicURL = "parley.example.com/hooks" }, []string{
			"http.public_url: must be an absolute http or https URL",
		}},
		{"a public URL of another scheme", func(c *Config) { c.HTTP.PublicURL = "ftp://parley.example.com" }, []string{
			"http.public_url: must be an absolute http or https URL",
		}},
		{"a zero body limit", func(c *Config) { c.HTTP.MaxBodyBytes = 0 }, []string{"http.max_body_bytes: must be positive"}},
		{"an empty API token", func(c *Config) { c.API.Tokens = []secret.String{"a", ""} }, []string{"api.tokens[1]: must not be empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.change(&cfg)
			err := Validate(&cfg, nil)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if got := problemStrings(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// knownPlatforms stands in for the registry's list.
var knownPlatforms = []string{"telegram", "messenger", "instagram", "slack", "whatsapp"}

// TestParseWithoutAPlatformListLeavesThePlatformToTheCheck: config takes
// its platform names from the caller, never from a list of its own.
func TestParseWithoutAPlatformListLeavesThePlatformToTheCheck(t *testing.T) {
	data := []byte("connectors:\n- {id: a, platform: discord, region: us, discord: {token: x}, slack: {}}\n")
	var checked []string
	_, err := Parse(data, noEnv, WithSettingsCheck(func(c Connector) []Problem {
		checked = append(checked, c.Platform)
		return []Problem{{Message: "platform " + c.Platform + " is not built into this binary"}}
	}))
	want := []string{
		"connectors[0] (a): slack: unknown key (line 2)",
		"connectors[0] (a): discord: platform discord is not built into this binary",
	}
	if got := problemStrings(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(checked, []string{"discord"}) {
		t.Errorf("checked %v", checked)
	}
}

func TestParseChecksConnectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want []string
	}{
		{"a duplicate id", fixture(t, "duplicate_id.yaml"), []string{
			`connectors[1] (tg-eu): id: "tg-eu" is already used by connectors[0]`,
		}},
		{"a bad region", fixture(t, "bad_region.yaml"), []string{
			`connectors[0] (tg-eu): region: "EU_West" must match ^[a-z0-9][a-z0-9-]{0,15}$`,
		}},
		{"the block of another platform", fixture(t, "wrong_block.yaml"), []string{
			"connectors[0] (fb-latam): telegram: not allowed for platform messenger (a connector has one block, named after its platform) (line 5)",
			"connectors[0] (fb-latam): messenger: required",
		}},
		{"two blocks", []byte("connectors:\n- {id: a, platform: slack, region: us, slack: {}, whatsapp: {}}\n"), []string{
			"connectors[0] (a): whatsapp: not allowed for platform slack (a connector has one block, named after its platform) (line 2)",
		}},
		{"a block that is not a mapping", []byte("connectors:\n- {id: a, platform: slack, region: us, slack: [x]}\n"), []string{
			"connectors[0] (a): slack: must be a mapping (line 2)",
		}},
		{"an unknown platform", []byte("connectors:\n- {id: a, platform: discord, region: us, discord: {}}\n"), []string{
			"connectors[0] (a): discord: unknown key (line 2)",
			`connectors[0] (a): platform: must be one of telegram, messenger, instagram, slack, whatsapp (got "discord")`,
		}},
		{"a bad id, left out of the label", []byte("connectors:\n- {id: FB_Latam, platform: slack, region: us, slack: {}}\n"), []string{
			`connectors[0]: id: "FB_Latam" must match ^[a-z0-9][a-z0-9-]{0,31}$`,
		}},
		{"an id over 32 characters", []byte("connectors:\n- {id: " + strings.Repeat("a", 33) + ", platform: slack, region: us, slack: {}}\n"), []string{
			`connectors[0]: id: "` + strings.Repeat("a", 33) + `" must match ^[a-z0-9][a-z0-9-]{0,31}$`,
		}},
		{"an empty connector", []byte("connectors:\n- {}\n"), []string{
			"connectors[0]: id: required",
			"connectors[0]: region: required",
			"connectors[0]: platform: required",
		}},
		{"connectors not a list", []byte("connectors: {id: a}\n"), []string{"connectors: must be a list (line 1)"}},
		{"a connector not a mapping", []byte("connectors: [tg-eu]\n"), []string{"connectors[0]: must be a mapping (line 1)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data, noEnv, WithPlatforms(knownPlatforms))
			if got := problemStrings(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestConnectorEnabledDefaultsToTrue(t *testing.T) {
	cfg, err := Parse(fixture(t, "enabled_default.yaml"), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := map[string]bool{}
	for _, c := range cfg.Connectors {
		got[c.ID] = c.Enabled
	}
	want := map[string]bool{"on-by-default": true, "switched-off": false, "switched-on": true}
	for id, enabled := range want {
		if got[id] != enabled {
			t.Errorf("%s: enabled = %v, want %v", id, got[id], enabled)
		}
	}
}

func TestRegionsAndEnabledConnectors(t *testing.T) {
	cfg, err := Parse(fixture(t, "enabled_default.yaml"), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := cfg.Regions(), []string{"ap", "us"}; !slices.Equal(got, want) {
		t.Errorf("Regions() = %v, want %v (the disabled connector's region left out)", got, want)
	}
	ids := func(cs []Connector) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	for _, tc := range []struct {
		regions []string
		want    []string
	}{
		{nil, []string{"on-by-default", "switched-on"}},
		{[]string{"us"}, []string{"on-by-default"}},
		{[]string{"ap", "us"}, []string{"on-by-default", "switched-on"}},
		{[]string{"eu"}, nil},
		{[]string{"mars"}, nil},
	} {
		if got := ids(cfg.EnabledConnectors(tc.regions)); !slices.Equal(got, tc.want) {
			t.Errorf("EnabledConnectors(%v) = %v, want %v", tc.regions, got, tc.want)
		}
	}
}

// messengerSettings stands in for a connector's own settings type.
type messengerSettings struct {
	AppSecret   secret.String `yaml:"app_secret"`
	VerifyToken secret.String `yaml:"verify_token"`
	Pages       []struct {
		ID          string        `yaml:"id"`
		AccessToken secret.String `yaml:"access_token"`
	} `yaml:"pages"`
	GraphURL     string        `yaml:"graph_url"`
	GraphVersion string        `yaml:"graph_version"`
	Retries      int           `yaml:"retries"`
	Timeout      time.Duration `yaml:"timeout"`
}

// checkMessenger is a SettingsCheck as cmd/parley would build one.
func checkMessenger(c Connector) []Problem {
	if c.Platform != "messenger" {
		return nil
	}
	s := messengerSettings{GraphVersion: "v25.0"}
	if err := c.DecodeSettings(&s); err != nil {
		return ProblemsOf(err)
	}
	var errs []error
	var probs []Problem
	if s.AppSecret == "" {
		probs = append(probs, Problem{Path: "app_secret", Message: "required"})
	}
	for i, p := range s.Pages {
		if p.AccessToken == "" {
			probs = append(probs, Problem{Path: fmt.Sprintf("pages[%d].access_token", i), Message: "required"})
		}
	}
	if len(s.Pages) == 0 {
		errs = append(errs, errors.New("at least one page is needed"))
	}
	return append(probs, ProblemsOf(errors.Join(errs...))...)
}

func TestSettingsCheckProblemsArePrefixedWithTheConnector(t *testing.T) {
	const data = `
connectors:
  - id: tg-eu
    platform: telegram
    region: eu
    telegram: {token: a}
  - id: fb-latam
    platform: messenger
    region: latam
    enabled: false
    messenger:
      verify_token: v
  - id: fb-us
    platform: messenger
    region: us
    messenger:
      app_secret: ${FB_US_SECRET}
      pages:
        - {id: "1", acces_token: x}
      retries: many
`
	_, err := Parse([]byte(data), noEnv, WithSettingsCheck(checkMessenger))
	want := []string{
		"connectors[2] (fb-us): messenger.app_secret: environment variable FB_US_SECRET is not set (line 17)",
		"connectors[1] (fb-latam): messenger.app_secret: required",
		"connectors[1] (fb-latam): messenger: at least one page is needed",
		"connectors[2] (fb-us): messenger.pages[0].acces_token: unknown key (line 19)",
		"connectors[2] (fb-us): messenger.retries: must be an integer (line 20)",
	}
	if got := problemStrings(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDecodeSettings(t *testing.T) {
	t.Run("decodes the block and keeps defaults for absent keys", func(t *testing.T) {
		cfg := mustParse(t, `
connectors:
  - id: fb-latam
    platform: messenger
    region: latam
    messenger:
      app_secret: s
      pages: [{id: "1", access_token: t}]
      timeout: 5s
`)
		s := messengerSettings{GraphVersion: "v25.0", GraphURL: "https://graph.facebook.com"}
		if err := cfg.Connectors[0].DecodeSettings(&s); err != nil {
			t.Fatalf("DecodeSettings: %v", err)
		}
		if s.AppSecret.Reveal() != "s" || len(s.Pages) != 1 || s.Pages[0].AccessToken.Reveal() != "t" ||
			s.GraphVersion != "v25.0" || s.GraphURL != "https://graph.facebook.com" || s.Timeout != 5*time.Second {
			t.Errorf("settings = %+v", s)
		}
	})
	t.Run("reports every problem relative to the block", func(t *testing.T) {
		cfg := mustParse(t, `
connectors:
  - id: fb-latam
    platform: messenger
    region: latam
    messenger:
      app_secret: {nested: x}
      pages: [{id: "1", token: t}]
      timeout: 5
      colour: red
`)
		err := cfg.Connectors[0].DecodeSettings(&messengerSettings{})
		want := []string{
			"app_secret: must be a string (line 7)",
			"pages[0].token: unknown key (line 8)",
			"timeout: must be a duration such as 90s or 2h (line 9)",
			"colour: unknown key (line 10)",
		}
		if got := problemStrings(t, err); !slices.Equal(got, want) {
			t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
	t.Run("accepts an empty block", func(t *testing.T) {
		cfg := mustParse(t, "connectors:\n  - {id: s, platform: slack, region: us, slack: }\n")
		s := struct {
			Mode string `yaml:"mode"`
		}{Mode: "events"}
		if err := cfg.Connectors[0].DecodeSettings(&s); err != nil || s.Mode != "events" {
			t.Errorf("DecodeSettings = %v, mode %q", err, s.Mode)
		}
	})
	t.Run("needs a pointer", func(t *testing.T) {
		cfg := mustParse(t, "connectors:\n  - {id: s, platform: slack, region: us, slack: {}}\n")
		err := cfg.Connectors[0].DecodeSettings(struct{}{})
		var ve *ValidationError
		if err == nil || errors.As(err, &ve) {
			t.Errorf("error = %v, want a programming error", err)
		}
	})
}

func TestProblemsOf(t *testing.T) {
	inner := &ValidationError{Problems: []Problem{{Path: "a", Message: "required"}}}
	for _, tc := range []struct {
		name string
		err  error
		want []Problem
	}{
		{"nil", nil, nil},
		{"a wrapped validation error", fmt.Errorf("decoding: %w", inner), inner.Problems},
		{"a plain error", errors.New("bad"), []Problem{{Message: "bad"}}},
		{"joined errors", errors.Join(errors.New("x"), inner), []Problem{{Message: "x"}, {Path: "a", Message: "required"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ProblemsOf(tc.err); !slices.Equal(got, tc.want) {
				t.Errorf("ProblemsOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseReportsEachMistakeOnce(t *testing.T) {
	const head = "connectors:\n  - id: fb-eu\n    platform: messenger\n    region: eu\n    messenger:\n      pages: [{id: '1', access_token: t}]\n"
	for _, tc := range []struct {
		name string
		yaml string
		want string
	}{
		{"an unset variable the check also requires", head + "      app_secret: ${FB_SECRET}\n",
			"connectors[0] (fb-eu): messenger.app_secret: environment variable FB_SECRET is not set (line 7)"},
		{"a missing file the check also requires", head + "      app_secret_file: secret.txt\n",
			"connectors[0] (fb-eu): messenger.app_secret_file: reading file: no such file (line 7)"},
		{"a value that does not decode", "nats:\n  replicas: -x\n", "nats.replicas: must be an integer (line 2)"},
		{"a block that is not a mapping", "connectors:\n  - {id: fb-eu, platform: messenger, region: eu, messenger: x}\n",
			"connectors[0] (fb-eu): messenger: must be a mapping (line 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(string) ([]byte, error) { return nil, errors.New("no such file") }
			_, err := Parse([]byte(tc.yaml), noEnv, WithReadFile(read), WithSettingsCheck(checkMessenger))
			if got := problemStrings(t, err); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
}

func TestWarningsSayThatAnEmptyTokenListClosesV1(t *testing.T) {
	const closed = "api.tokens is empty: /v1 (replies, conversations, media) answers 401 to everyone"
	for _, tc := range []struct {
		name string
		data string
		want []string
	}{
		{"tokens absent", "", []string{closed}},
		{"tokens empty", "api: {tokens: []}", []string{closed}},
		{"tokens set", "api: {tokens: [t]}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustParse(t, tc.data).Warnings(); !slices.Equal(got, tc.want) {
				t.Errorf("Warnings() = %q, want %q", got, tc.want)
			}
		})
	}
}
