package config

import (
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	idPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	regionPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)
	// A subject prefix is one or more NATS subject tokens, without
	// wildcards, since every subject Parley uses starts with it.
	subjectPrefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

const minDedupeWindow = 100 * time.Millisecond

// SettingsCheck validates the platform block of one connector, typically by
// decoding it with DecodeSettings into the connector's settings type and
// running that type's own validation. It must not do I/O: "parley config
// check" connects nowhere. Paths in the problems it returns are relative to
// the block ("app_secret", "pages[0].id", or "" for the block as a whole);
// Validate prefixes them, giving "connectors[1] (fb-latam):
// messenger.app_secret". ProblemsOf turns a connector's error into problems.
//
// cmd/parley builds the check from the connector registry; taking it as a
// function is what keeps this package free of connector imports.
type SettingsCheck func(c Connector) []Problem

// Validate checks cfg and returns a *ValidationError listing every problem,
// or nil. Parse and Load already run it (with the check given by
// WithSettingsCheck); call it directly for a Config built in code.
//
// Disabled connectors are validated like enabled ones, check included, so
// that enabling one later cannot reveal a mistake that was already there.
// A nil check skips the platform blocks' contents.
func Validate(cfg *Config, check SettingsCheck) error {
	var probs problems
	validate(cfg, nil, check, &probs)
	return probs.err()
}

// Warnings returns what c allows but an operator may not mean, one line
// each, for `parley config check` to print and `parley serve` to log at
// start. None is an error: each describes a deployment someone may want.
func (c *Config) Warnings() []string {
	var out []string
	if len(c.API.Tokens) == 0 {
		// Webhooks alone, with helpdesks reading events and sending
		// replies on NATS, is such a deployment; but a forgotten token
		// list otherwise shows only as 401s to the helpdesk.
		out = append(out, "api.tokens is empty: /v1 (replies, conversations, media) answers 401 to everyone")
	}
	return out
}

// validate checks cfg; platforms, when known, are the platform names a
// connector may have.
func validate(cfg *Config, platforms []string, check SettingsCheck, probs *problems) {
	if cfg.DataDir == "" {
		probs.addTop("data_dir", "required")
	}
	oneOf(probs, path{rel: "log.level"}, cfg.Log.Level, "debug", "info", "warn", "error")
	oneOf(probs, path{rel: "log.format"}, cfg.Log.Format, "text", "json")
	validateNATS(&cfg.NATS, probs)

	if cfg.HTTP.Listen == "" {
		probs.addTop("http.listen", "required")
	} else if !isHostPort(cfg.HTTP.Listen) {
		probs.addTop("http.listen", "must be host:port, such as 127.0.0.1:8080")
	}
	if u := cfg.HTTP.PublicURL; u != "" && !isHTTPURL(u) {
		probs.addTop("http.public_url", "must be an absolute http or https URL")
	}
	if cfg.HTTP.MaxBodyBytes <= 0 {
		probs.addTop("http.max_body_bytes", "must be positive")
	}
	// An empty token list is allowed and disables /v1 (see API.Tokens and
	// Warnings).
	for i, t := range cfg.API.Tokens {
		if t == "" {
			probs.add(path{rel: "api.tokens"}.index(i), 0, "must not be empty")
		}
	}

	firstWithID := make(map[string]int)
	for i, c := range cfg.Connectors {
		validateConnector(i, c, firstWithID, platforms, check, probs)
	}
}

func validateNATS(n *NATS, probs *problems) {
	if n.URL != "" {
		for s := range strings.SplitSeq(n.URL, ",") {
			if !isNATSURL(strings.TrimSpace(s)) {
				// No quoting: a NATS URL may carry user:password.
				probs.addTop("nats.url", "must be a comma-separated list of URLs such as nats://host:4222")
				break
			}
		}
	}
	var methods []string
	if n.CredentialsFile != "" {
		methods = append(methods, "credentials_file")
	}
	if n.User != "" || n.Password != "" {
		methods = append(methods, "user/password")
	}
	if n.Token != "" {
		methods = append(methods, "token")
	}
	if n.NKeySeedFile != "" {
		methods = append(methods, "nkey_seed_file")
	}
	if len(methods) > 1 {
		probs.addTop("nats", "set only one of credentials_file, user/password, token, nkey_seed_file (got %s)", strings.Join(methods, ", "))
	}
	if n.User != "" && n.Password == "" {
		probs.addTop("nats.password", "required with nats.user")
	}
	if n.Password != "" && n.User == "" {
		probs.addTop("nats.user", "required with nats.password")
	}
	if n.TLS.CertFile != "" && n.TLS.KeyFile == "" {
		probs.addTop("nats.tls.key_file", "required with nats.tls.cert_file")
	}
	if n.TLS.KeyFile != "" && n.TLS.CertFile == "" {
		probs.addTop("nats.tls.cert_file", "required with nats.tls.key_file")
	}

	switch {
	case n.Replicas < 1 || n.Replicas > 5:
		probs.addTop("nats.replicas", "must be between 1 and 5")
	case n.URL == "" && n.Replicas != 1:
		probs.addTop("nats.replicas", "must be 1 with the embedded server (nats.url empty)")
	}
	if !subjectPrefixPattern.MatchString(n.SubjectPrefix) {
		probs.addTop("nats.subject_prefix", "must be dot-separated tokens of letters, digits, - and _")
	}
	if n.LedgerTTL <= 0 {
		probs.addTop("nats.ledger_ttl", "must be positive")
	}
	if n.EventMaxAge <= 0 {
		probs.addTop("nats.event_max_age", "must be positive")
	} else if w := n.DedupeWindow.Duration(); w < minDedupeWindow || w > n.EventMaxAge.Duration() {
		probs.addTop("nats.dedupe_window", "must be between %s and nats.event_max_age (%s)", minDedupeWindow, n.EventMaxAge)
	}
	if n.Embedded.Listen != "" && !isHostPort(n.Embedded.Listen) {
		probs.addTop("nats.embedded.listen", "must be host:port, such as 127.0.0.1:4222")
	}
	oneOf(probs, path{rel: "nats.embedded.sync"}, n.Embedded.Sync, "always", "interval")
}

func validateConnector(i int, c Connector, firstWithID map[string]int, platforms []string, check SettingsCheck, probs *problems) {
	p := path{prefix: connectorLabel(i, c.ID)}
	switch {
	case c.ID == "":
		probs.add(p.key("id"), 0, "required")
	case !idPattern.MatchString(c.ID):
		probs.add(p.key("id"), 0, "%q must match %s", c.ID, idPattern)
	default:
		if first, dup := firstWithID[c.ID]; dup {
			probs.add(p.key("id"), 0, "%q is already used by connectors[%d]", c.ID, first)
		} else {
			firstWithID[c.ID] = i
		}
	}
	switch {
	case c.Region == "":
		probs.add(p.key("region"), 0, "required")
	case !regionPattern.MatchString(c.Region):
		probs.add(p.key("region"), 0, "%q must match %s", c.Region, regionPattern)
	}
	if c.Platform == "" {
		probs.add(p.key("platform"), 0, "required")
		return
	}
	if platforms != nil && !oneOf(probs, p.key("platform"), c.Platform, platforms...) {
		return
	}
	bp := p.key(c.Platform)
	if c.Settings == nil {
		probs.add(bp, 0, "required")
		return
	}
	if check == nil {
		return
	}
	for _, q := range check(c) {
		qp := bp
		switch {
		case q.Path == "":
		case strings.HasPrefix(q.Path, "["):
			qp.rel += q.Path
		default:
			qp.rel += "." + q.Path
		}
		*probs = append(*probs, Problem{Path: qp.String(), Message: q.Message, Line: q.Line})
	}
}

// oneOf reports whether v is one of allowed, adding a problem if not. Enum
// values are quoted in the message: they are never secrets.
func oneOf(probs *problems, p path, v string, allowed ...string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	probs.add(p, 0, "must be one of %s (got %q)", strings.Join(allowed, ", "), v)
	return false
}

// isHostPort accepts what net.Listen accepts for TCP, with a numeric port;
// the host may be empty (every interface).
func isHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n <= 65535
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func isNATSURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return false
}
