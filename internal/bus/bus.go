package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// embeddedReadyTimeout bounds how long Open waits for the embedded server
// when ctx has no earlier deadline.
const embeddedReadyTimeout = 10 * time.Second

// Bus is one connection to NATS (and, in embedded mode, the server it runs).
// Its methods are safe for concurrent use.
type Bus struct {
	opts      Options
	log       *slog.Logger
	srv       *server.Server // nil when connected to an external server
	nc        *nats.Conn
	js        jetstream.JetStream
	subjects  Subjects
	clientURL string

	closedCh   chan struct{} // closed by the connection's ClosedHandler
	closedOnce sync.Once
	closeOnce  sync.Once
	closeErr   error

	probeMu  sync.Mutex // one Check round trip at a time
	probedAt time.Time
	probeOK  bool
}

// Status is a snapshot of the connection, for readiness probes.
type Status struct {
	Connected bool   `json:"connected"`
	Embedded  bool   `json:"embedded"`
	URL       string `json:"url,omitempty"` // credentials redacted
	State     string `json:"state"`         // connected, connecting, reconnecting, disconnected, draining_subs, draining_pubs, closed
}

// Open connects to NATS, starting the embedded JetStream server first when
// opts.URL is empty. To an external server it connects in the background: a
// server that is down at start makes Open succeed with a reconnecting
// connection (see [Bus.Status]) rather than fail. Everything Open started is
// stopped again when it returns an error.
func Open(ctx context.Context, opts Options) (*Bus, error) {
	opts = opts.withDefaults()
	b := &Bus{
		opts:     opts,
		log:      opts.Logger,
		subjects: Subjects{Prefix: opts.SubjectPrefix},
		closedCh: make(chan struct{}),
	}
	if err := validatePrefix(opts.SubjectPrefix); err != nil {
		return nil, err
	}

	natsOpts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opts.ReconnectWait),
		nats.PingInterval(opts.PingInterval),
		nats.MaxPingsOutstanding(opts.MaxPingsOut),
		nats.ReconnectJitter(opts.ReconnectWait/2, opts.ReconnectWait),
		nats.ClosedHandler(func(*nats.Conn) { b.closedOnce.Do(func() { close(b.closedCh) }) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				b.log.Warn("nats async error", "subject", sub.Subject, "error", err)
				return
			}
			b.log.Warn("nats async error", "error", err)
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			b.log.Warn("nats server entering lame duck mode", "url", nc.ConnectedUrlRedacted())
		}),
	}
	if opts.Name != "" {
		natsOpts = append(natsOpts, nats.Name(opts.Name))
	}

	var nc *nats.Conn
	var err error
	if opts.URL == "" {
		b.srv, err = startEmbedded(ctx, opts)
		if err != nil {
			return nil, err
		}
		if opts.EmbeddedListen != "" {
			b.clientURL = b.srv.ClientURL()
		}
		nc, err = nats.Connect("", append(natsOpts, nats.InProcessServer(b.srv))...)
		if err != nil {
			_ = b.shutdownServer(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("connecting to embedded nats server: %w", err)
		}
	} else {
		authOpts, err := authOptions(opts)
		if err != nil {
			return nil, err
		}
		natsOpts = append(natsOpts, authOpts...)
		natsOpts = append(natsOpts, nats.RetryOnFailedConnect(true))
		b.clientURL = opts.URL
		nc, err = nats.Connect(opts.URL, natsOpts...)
		if err != nil {
			// nats errors do not carry the URL's credentials.
			return nil, fmt.Errorf("connecting to nats %s: %w", redactURL(opts.URL), err)
		}
	}
	b.nc = nc

	b.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(opts.PublishTimeout))
	if err != nil {
		nc.Close()
		_ = b.shutdownServer(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("creating jetstream context: %w", err)
	}
	b.log.Info("nats ready", "embedded", b.srv != nil, "url", redactURL(b.clientURL), "state", b.Status().State)
	return b, nil
}

func startEmbedded(ctx context.Context, opts Options) (*server.Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("embedded nats server: data dir required")
	}
	sopts := &server.Options{
		ServerName: "parley-embedded",
		JetStream:  true,
		StoreDir:   filepath.Join(opts.DataDir, "nats"),
		SyncAlways: opts.SyncAlways,
		NoSigs:     true,
		DontListen: opts.EmbeddedListen == "",
		MaxPayload: opts.EmbeddedMaxPayload,
	}
	if opts.EmbeddedListen != "" {
		host, port, err := splitListen(opts.EmbeddedListen)
		if err != nil {
			return nil, err
		}
		sopts.Host, sopts.Port = host, port
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{opts.Logger}, false, false, false)
	go srv.Start()

	wait := embeddedReadyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = max(time.Until(dl), time.Millisecond)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats server: not ready after %s", wait)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats server: jetstream did not start (store %s)", sopts.StoreDir)
	}
	return srv, nil
}

// splitListen turns "host:port" into server options; port 0 picks a free port.
func splitListen(listen string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("embedded listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("embedded listen %q: invalid port", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func authOptions(opts Options) ([]nats.Option, error) {
	var o []nats.Option
	if opts.CredentialsFile != "" {
		o = append(o, nats.UserCredentials(opts.CredentialsFile))
	}
	if opts.User != "" || opts.Password != "" {
		o = append(o, nats.UserInfo(opts.User, opts.Password))
	}
	if opts.Token != "" {
		o = append(o, nats.Token(opts.Token))
	}
	if opts.NKeySeedFile != "" {
		nk, err := nats.NkeyOptionFromSeed(opts.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed file %s: %w", opts.NKeySeedFile, err)
		}
		o = append(o, nk)
	}
	if opts.TLSCAFile != "" {
		o = append(o, nats.RootCAs(opts.TLSCAFile))
	}
	switch {
	case opts.TLSCertFile != "" && opts.TLSKeyFile != "":
		o = append(o, nats.ClientCert(opts.TLSCertFile, opts.TLSKeyFile))
	case opts.TLSCertFile != "" || opts.TLSKeyFile != "":
		return nil, errors.New("nats tls: cert file and key file go together")
	}
	return o, nil
}

// Conn is the underlying connection. Do not close it; use [Bus.Close].
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JS is the JetStream context of the connection.
func (b *Bus) JS() jetstream.JetStream { return b.js }

// Subjects builds subjects with the configured prefix.
func (b *Bus) Subjects() Subjects { return b.subjects }

// Options returns the options in effect (defaults applied).
func (b *Bus) Options() Options { return b.opts }

// Embedded reports whether this Bus runs its own server.
func (b *Bus) Embedded() bool { return b.srv != nil }

// ClientURL is where other clients reach this NATS: the embedded server's
// nats://host:port when it listens, the configured URL when external (as
// given, credentials included), "" for an embedded server without listener.
func (b *Bus) ClientURL() string { return b.clientURL }

// Status reports the connection state without I/O.
func (b *Bus) Status() Status {
	st := b.nc.Status()
	s := Status{
		Connected: st == nats.CONNECTED,
		Embedded:  b.srv != nil,
		State:     strings.ToLower(st.String()),
	}
	switch {
	case b.srv != nil:
		s.URL = b.clientURL
	case s.Connected:
		s.URL = b.nc.ConnectedUrlRedacted()
	default:
		s.URL = redactURL(b.opts.URL)
	}
	return s
}

// probeTimeout bounds the round trip of Check; a server slower than this
// to answer a ping is not taking writes either.
const probeTimeout = time.Second

// Check is Status with proof: when connected, it makes one round trip to
// the server (a ping, at most one a second however often it is asked) and
// reports Connected false when the server does not answer within a
// second. It catches a server that holds the connection open but is frozen
// before the client's own ping timer does.
func (b *Bus) Check(ctx context.Context) Status {
	s := b.Status()
	if !s.Connected {
		return s
	}
	b.probeMu.Lock()
	defer b.probeMu.Unlock()
	if time.Since(b.probedAt) < time.Second {
		if !b.probeOK {
			s.Connected, s.State = false, "not responding"
		}
		return s
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	b.probeOK = b.nc.FlushWithContext(pctx) == nil
	b.probedAt = time.Now()
	if !b.probeOK {
		s.Connected, s.State = false, "not responding"
	}
	return s
}

// Close drains the connection (in-flight publishes and subscriptions finish),
// then shuts the embedded server down and waits for it. When ctx ends first,
// the connection is closed at once and the server shut down anyway; Close then
// returns ctx's error. Calling Close again returns the first result.
func (b *Bus) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		var errs []error
		err := b.nc.Drain()
		switch {
		case err == nil, errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrConnectionClosed):
			// Drain closes a reconnecting connection itself.
		default:
			errs = append(errs, fmt.Errorf("draining nats connection: %w", err))
			b.nc.Close()
		}
		select {
		case <-b.closedCh:
		case <-ctx.Done():
			b.nc.Close()
			errs = append(errs, fmt.Errorf("draining nats connection: %w", ctx.Err()))
		}
		if err := b.shutdownServer(ctx); err != nil {
			errs = append(errs, err)
		}
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}

func (b *Bus) shutdownServer(ctx context.Context) error {
	if b.srv == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutting down embedded nats server: %w", ctx.Err())
	}
}

// redactURL hides the user information of every URL in a server list.
func redactURL(list string) string {
	if list == "" {
		return ""
	}
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "[unparsable url]"
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// serverLogger hands the embedded server's log lines to slog. Notices are
// Debug: the server is chatty at start and Parley logs its own lifecycle.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) logf(level slog.Level, format string, v []any) {
	if !s.l.Enabled(context.Background(), level) {
		return
	}
	s.l.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "nats-server")
}

func (s serverLogger) Noticef(format string, v ...any) { s.logf(slog.LevelDebug, format, v) }
func (s serverLogger) Warnf(format string, v ...any)   { s.logf(slog.LevelWarn, format, v) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.logf(slog.LevelError, format, v) }
func (s serverLogger) Errorf(format string, v ...any)  { s.logf(slog.LevelError, format, v) }
func (s serverLogger) Debugf(format string, v ...any)  { s.logf(slog.LevelDebug, format, v) }
func (s serverLogger) Tracef(format string, v ...any)  { s.logf(slog.LevelDebug, format, v) }
