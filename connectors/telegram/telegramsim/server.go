package telegramsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a Sim listening on a local address. It embeds the Sim, so its methods (Enqueue, Sent,
// FailNext, ...) are at hand.
type Server struct {
	*Sim
	// URL is the base URL to give a client, e.g. bot.WithServerURL(srv.URL):
	// "http://127.0.0.1:<port>", without a trailing slash.
	URL string

	srv       *http.Server
	ln        net.Listener
	connsMu   sync.Mutex
	fresh     map[net.Conn]bool // connections that have not sent a request yet
	stop      func() bool
	served    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewServer is New(opts).Start(context.Background()).
func NewServer(opts Options) (*Server, error) {
	return New(opts).Start(context.Background())
}

// Start serves the simulator on Options.ListenAddr (default 127.0.0.1 on a free port) until ctx ends
// or Close is called.
func (s *Sim) Start(ctx context.Context) (*Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listening for the telegram simulator on %s: %w", s.opts.ListenAddr, err)
	}
	srv := &Server{
		Sim: s,
		URL: "http://" + ln.Addr().String(),
		srv: &http.Server{
			Handler:           s,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		},
		ln:     ln,
		served: make(chan struct{}),
		fresh:  map[net.Conn]bool{},
	}
	srv.srv.ConnState = srv.trackConn
	// Shutdown waits up to 5s for connections that never sent a request (clients dial spares);
	// nothing is lost by closing them at once.
	srv.srv.RegisterOnShutdown(srv.closeFresh)
	go func() {
		defer close(srv.served)
		_ = srv.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	srv.stop = context.AfterFunc(ctx, func() { _ = srv.shutdown() })
	return srv, nil
}

func (srv *Server) trackConn(c net.Conn, state http.ConnState) {
	srv.connsMu.Lock()
	defer srv.connsMu.Unlock()
	if state == http.StateNew {
		srv.fresh[c] = true
	} else {
		delete(srv.fresh, c)
	}
}

func (srv *Server) closeFresh() {
	srv.connsMu.Lock()
	defer srv.connsMu.Unlock()
	for c := range srv.fresh {
		_ = c.Close()
		delete(srv.fresh, c)
	}
}

// Addr returns the address the server listens on.
func (srv *Server) Addr() net.Addr { return srv.ln.Addr() }

// Close closes the Sim (ending long polls and webhook delivery), then shuts the HTTP server down,
// waiting up to 5 seconds for requests in flight. It is idempotent.
func (srv *Server) Close() error {
	srv.stop()
	return srv.shutdown()
}

func (srv *Server) shutdown() error {
	srv.closeOnce.Do(func() {
		_ = srv.Sim.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.srv.Shutdown(ctx); err != nil {
			srv.closeErr = errors.Join(fmt.Errorf("shutting down the telegram simulator: %w", err), srv.srv.Close())
		}
		<-srv.served
	})
	return srv.closeErr
}
