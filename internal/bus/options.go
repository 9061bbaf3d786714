package bus

import (
	"log/slog"
	"time"
)

// Defaults applied by [Open] to zero fields of [Options].
const (
	DefaultReplicas       = 1
	DefaultSubjectPrefix  = "parley"
	DefaultDedupeWindow   = 2 * time.Hour
	DefaultEventMaxAge    = 7 * 24 * time.Hour
	DefaultDLQMaxAge      = 30 * 24 * time.Hour
	DefaultLedgerTTL      = 30 * 24 * time.Hour
	DefaultLeaseTTL       = 15 * time.Second
	DefaultReconnectWait  = 500 * time.Millisecond
	DefaultPublishTimeout = 2 * time.Second
	// DefaultPingInterval and DefaultMaxPingsOut make the client notice a
	// server that keeps the TCP connection open but answers nothing (a
	// frozen process, a hung VM) within about three intervals: it then
	// reconnects, Status says so and /readyz answers 503. The library's
	// defaults (2 minutes, 2 pings) would take minutes.
	DefaultPingInterval = 2 * time.Second
	DefaultMaxPingsOut  = 2

	// CommandMaxAge is how long a reply command waits in the outbox stream.
	CommandMaxAge = 7 * 24 * time.Hour
	// MediaJobMaxAge is how long a media job waits in its work queue.
	MediaJobMaxAge = 7 * 24 * time.Hour
	// OutboxMarkerTTL is how long a sent-marker stays in the outbox bucket.
	OutboxMarkerTTL = 7 * 24 * time.Hour
	// MediaTTL is how long stored media stays in the object store.
	MediaTTL = 30 * 24 * time.Hour
)

// Options configure [Open]. The zero value runs an embedded JetStream server,
// which needs DataDir.
type Options struct {
	// URL is the NATS server list (nats://h1:4222,nats://h2:4222). Empty
	// starts an embedded JetStream server instead.
	URL string
	// DataDir holds the embedded server's store, under DataDir/nats.
	DataDir string

	// CredentialsFile, User/Password, Token and NKeySeedFile authenticate to
	// an external server. Password and Token are never logged.
	CredentialsFile string
	User            string
	NKeySeedFile    string
	Password        string
	Token           string

	// TLSCAFile verifies the server; TLSCertFile and TLSKeyFile are the
	// client certificate (both or neither).
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string

	// Replicas of every stream, bucket and object store (default 1; 3 on a
	// cluster).
	Replicas int
	// SubjectPrefix is the first subject token (default "parley").
	SubjectPrefix string
	// DedupeWindow is the Nats-Msg-Id window of the streams (default 2h),
	// clamped to each stream's MaxAge.
	DedupeWindow time.Duration
	// EventMaxAge is how long events stay in PARLEY_EVT_<R> (default 7 days).
	EventMaxAge time.Duration
	// DLQMaxAge is how long dead letters stay in PARLEY_DLQ_<R> (default 30
	// days).
	DLQMaxAge time.Duration
	// LedgerTTL is how long the reply ledger remembers a sent message
	// (default 30 days): receipts, echoes and late failures of older sends
	// are no longer resolved.
	LedgerTTL time.Duration

	// EmbeddedListen is the embedded server's TCP address. Empty means no
	// listener (in-process clients only); "127.0.0.1:4222" lets other
	// clients in; port 0 picks a free port (see [Bus.ClientURL]).
	EmbeddedListen string
	// SyncAlways makes the embedded server fsync every write, so that a
	// PubAck means "on disk".
	SyncAlways bool
	// EmbeddedMaxPayload is the embedded server's largest message in bytes
	// (0: the server's default, 1 MB). Tests lower it to meet refusals.
	EmbeddedMaxPayload int32

	// Name is the client connection name shown by the server.
	Name string
	// Logger receives connection and embedded-server events; nil discards.
	Logger *slog.Logger

	// LeaseTTL is the TTL of the leases bucket (default 15s): a holder that
	// stops renewing loses its lease after that long.
	LeaseTTL time.Duration

	// ReconnectWait is the pause between reconnect attempts to an external
	// server (default 500ms, with jitter).
	ReconnectWait time.Duration
	// PublishTimeout bounds one publish attempt (default 2s). It is also how
	// long Publish keeps trying while the connection is down before it
	// reports ErrNotDurable, even when its context allows longer.
	PublishTimeout time.Duration
	// PingInterval and MaxPingsOut bound how long a silent server goes
	// unnoticed (defaults 2s and 2).
	PingInterval time.Duration
	MaxPingsOut  int
}

func (o Options) withDefaults() Options {
	if o.Replicas <= 0 {
		o.Replicas = DefaultReplicas
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.DedupeWindow <= 0 {
		o.DedupeWindow = DefaultDedupeWindow
	}
	if o.EventMaxAge <= 0 {
		o.EventMaxAge = DefaultEventMaxAge
	}
	if o.DLQMaxAge <= 0 {
		o.DLQMaxAge = DefaultDLQMaxAge
	}
	if o.LedgerTTL <= 0 {
		o.LedgerTTL = DefaultLedgerTTL
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = DefaultReconnectWait
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxPingsOut <= 0 {
		o.MaxPingsOut = DefaultMaxPingsOut
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// LogValue prints the options with every secret redacted.
func (o Options) LogValue() slog.Value {
	redact := func(s string) string {
		if s == "" {
			return ""
		}
		return "[redacted]"
	}
	return slog.GroupValue(
		slog.String("url", redactURL(o.URL)),
		slog.String("data_dir", o.DataDir),
		slog.String("credentials_file", o.CredentialsFile),
		slog.String("user", o.User),
		slog.String("password", redact(o.Password)),
		slog.String("token", redact(o.Token)),
		slog.String("nkey_seed_file", o.NKeySeedFile),
		slog.Int("replicas", o.Replicas),
		slog.String("subject_prefix", o.SubjectPrefix),
		slog.Duration("dedupe_window", o.DedupeWindow),
		slog.String("embedded_listen", o.EmbeddedListen),
		slog.Bool("sync_always", o.SyncAlways),
	)
}
