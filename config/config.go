// Package config loads, expands and validates Parley's YAML configuration.
//
// Loading happens in three steps, each of which collects every problem it
// finds instead of stopping at the first:
//
//  1. Expansion, on the YAML node tree: ${ENV_VAR} references in string
//     values are replaced, and a key X_file is replaced by X holding the
//     contents of the named file. Working on nodes rather than on Go values is
//     what makes both rules apply inside connector blocks, which this package
//     never decodes itself.
//  2. Strict decoding: an unknown key is an error at every level, and so is a
//     value of the wrong shape.
//  3. Validation of the top-level settings and of each connector's identity,
//     plus, through a SettingsCheck supplied by the caller, of each
//     connector's own platform block.
//
// Before the first step, a document whose YAML aliases would expand past a
// bound (maxAliasNodes, maxAliasBytes) is refused with that one problem:
// decoding and validation walk an anchored value again at every alias, and
// a small file can expand to millions of nodes.
//
// Every problem carries its path, in the form operators see in
// "parley config check": "http.listen: ..." at the top level and
// "connectors[1] (fb-latam): messenger.app_secret: required" inside a
// connector. Problems are returned together as a *ValidationError.
//
// Invariants: a *Config returned without error has defaults applied and has
// passed validation (of the platform blocks too, when Parse was given a
// SettingsCheck); secrets are held as secret.String, which never prints
// its value; and each Connector keeps its platform block as an expanded but
// undecoded *yaml.Node, so this package does not import any connector.
package config

import (
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/parley-gateway/parley/internal/secret"
)

// Config is the whole configuration file (CONTRACT §2).
type Config struct {
	// DataDir holds the embedded NATS store and the WhatsApp device stores.
	DataDir    string      `yaml:"data_dir"`
	Log        Log         `yaml:"log"`
	NATS       NATS        `yaml:"nats"`
	HTTP       HTTP        `yaml:"http"`
	API        API         `yaml:"api"`
	Connectors []Connector `yaml:"connectors"`
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// NATS configures the connection to NATS, or the embedded server used when
// URL is empty.
type NATS struct {
	// URL is empty for the embedded JetStream server under DataDir, else a
	// comma-separated list of server URLs.
	URL string `yaml:"url"`

	// At most one way to authenticate: a credentials file, user and
	// password, a token, or an NKey seed file.
	CredentialsFile string        `yaml:"credentials_file"`
	User            string        `yaml:"user"`
	Password        secret.String `yaml:"password"`
	Token           secret.String `yaml:"token"`
	NKeySeedFile    string        `yaml:"nkey_seed_file"`
	TLS             TLS           `yaml:"tls"`

	// Replicas of every stream and bucket (3 on a cluster).
	Replicas      int    `yaml:"replicas"`
	SubjectPrefix string `yaml:"subject_prefix"`
	// DedupeWindow is the JetStream duplicate window: a redelivery of an
	// event within it is dropped by Nats-Msg-Id.
	DedupeWindow Duration `yaml:"dedupe_window"`
	Embedded     Embedded `yaml:"embedded"`
	// EventMaxAge is how long the event streams keep events.
	EventMaxAge Duration `yaml:"event_max_age"`
	// LedgerTTL is how long the reply ledger remembers each message sent:
	// receipts, echoes and late failures of older sends are not resolved.
	LedgerTTL Duration `yaml:"ledger_ttl"`
}

// TLS names the files for a TLS connection to NATS. They are paths read by
// the NATS client, not secrets inlined here, so the X_file rule does not
// apply to these keys.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Embedded configures the in-process NATS server.
type Embedded struct {
	// Listen is empty to accept in-process clients only; "127.0.0.1:4222"
	// lets other clients in.
	Listen string `yaml:"listen"`
	// Sync is "always" (fsync every write: acknowledged means on disk) or
	// "interval" (faster, but a crash may lose acknowledged writes).
	Sync string `yaml:"sync"`
}

// HTTP configures the server for webhooks, the /v1 API and health.
type HTTP struct {
	Listen string `yaml:"listen"`
	// PublicURL is the external base URL, used to register webhooks where
	// the platform API allows it. Empty when webhooks are set up by hand.
	PublicURL    string `yaml:"public_url"`
	MaxBodyBytes int64  `yaml:"max_body_bytes"`
}

// API configures the authenticated /v1 endpoints.
type API struct {
	// Tokens are the bearer tokens accepted by /v1/*. An empty list is valid
	// and disables /v1 entirely (webhooks, health and metrics still run),
	// with a warning (Config.Warnings); an empty string in the list is an
	// error, because it would usually be an environment variable that
	// expanded to nothing.
	Tokens []secret.String `yaml:"tokens"`
}

// Connector is one configured connector. Its platform block (the key named
// after Platform) is kept undecoded in Settings; the connector decodes it
// with DecodeSettings into its own settings type.
type Connector struct {
	// ID is unique, matches ^[a-z0-9][a-z0-9-]{0,31}$ and appears in
	// subjects and webhook paths.
	ID       string `yaml:"id"`
	Platform string `yaml:"platform"`
	// Region names the streams, buckets and object store that hold this
	// connector's data.
	Region string `yaml:"region"`
	// Enabled is true when the key is absent.
	Enabled bool `yaml:"enabled"`
	// Settings is the platform block after ${ENV} and X_file expansion: a
	// mapping node. It is nil only for a connector that failed validation.
	Settings *yaml.Node `yaml:"-"`
}

// Default returns a configuration with every default applied and no
// connectors. Parse starts from it, so a key left out keeps its default.
func Default() Config {
	return Config{
		DataDir: "./parley-data",
		Log:     Log{Level: "info", Format: "text"},
		NATS: NATS{
			Replicas:      1,
			SubjectPrefix: "parley",
			DedupeWindow:  Duration(2 * time.Hour),
			Embedded:      Embedded{Sync: "always"},
			EventMaxAge:   Duration(7 * 24 * time.Hour),
			LedgerTTL:     Duration(30 * 24 * time.Hour),
		},
		HTTP: HTTP{
			Listen:       "127.0.0.1:8080",
			MaxBodyBytes: 1 << 20,
		},
	}
}

// Regions returns the sorted, distinct regions of the enabled connectors:
// what "parley serve" runs when no --region is given.
func (c *Config) Regions() []string {
	var regions []string
	for _, conn := range c.Connectors {
		if conn.Enabled {
			regions = append(regions, conn.Region)
		}
	}
	slices.Sort(regions)
	return slices.Compact(regions)
}

// EnabledConnectors returns the enabled connectors whose region is one of
// regions, in configuration order. An empty regions means every region.
// A region that no connector names simply matches nothing; whether that is
// an error is the caller's decision.
func (c *Config) EnabledConnectors(regions []string) []Connector {
	var out []Connector
	for _, conn := range c.Connectors {
		if conn.Enabled && (len(regions) == 0 || slices.Contains(regions, conn.Region)) {
			out = append(out, conn)
		}
	}
	return out
}
