package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

// The test platform: a connector whose behaviour the test scripts through
// its settings, and a probe that sees every instance of it across gateways.

// testConfig is the test platform's settings block.
type testConfig struct {
	Exclusive bool
	Affinity  bool // sends need the session (connectors.SendAffinity)
	Webhook   bool
	// FailRuns makes the first FailRuns calls of Run fail with FailWith
	// (after setting FailState, if any).
	FailRuns  int
	FailWith  string
	FailState normalize.State
	// NeedsOperator makes a failing Run end with connectors.NeedsOperator
	// in FailState, instead of a plain error.
	NeedsOperator bool
	BadNew        string // New fails with this message
	PanicRuns     int    // the first PanicRuns calls of Run panic
	Probe         *probe
}

// settings hands a testConfig to the connector's New, as config.Connector
// would hand a YAML block.
type settings struct{ cfg testConfig }

func (s settings) DecodeSettings(v any) error {
	p, ok := v.(*testConfig)
	if !ok {
		return fmt.Errorf("decoding into %T", v)
	}
	*p = s.cfg
	return nil
}

// probe records what the test platform's connectors do.
type probe struct {
	mu      sync.Mutex
	running map[string]int // instance (connector id@gateway) → live Runs
	maxLive map[string]int // connector id → most Runs live at once across gateways
	live    map[string]int // connector id → Runs live now
	runs    map[string]int // connector id → Run calls
	conns   map[string]*testConn
}

func newProbe() *probe {
	return &probe{running: map[string]int{}, maxLive: map[string]int{}, live: map[string]int{}, runs: map[string]int{}, conns: map[string]*testConn{}}
}

func (p *probe) started(c *testConn) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs[c.deps.ID]++
	p.live[c.deps.ID]++
	p.running[c.name]++
	p.maxLive[c.deps.ID] = max(p.maxLive[c.deps.ID], p.live[c.deps.ID])
	p.conns[c.name] = c
	return p.runs[c.deps.ID]
}

func (p *probe) stopped(c *testConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live[c.deps.ID]--
	p.running[c.name]--
}

// runningOn returns the instances (names) that run connector id now.
func (p *probe) runningOn(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for name, n := range p.running {
		if n > 0 && strings.HasPrefix(name, id+"@") {
			out = append(out, name)
		}
	}
	return out
}

func (p *probe) runsOf(id string) int    { p.mu.Lock(); defer p.mu.Unlock(); return p.runs[id] }
func (p *probe) maxLiveOf(id string) int { p.mu.Lock(); defer p.mu.Unlock(); return p.maxLive[id] }

func (p *probe) conn(name string) *testConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[name]
}

// testConn is the test platform's connector.
type testConn struct {
	name   string // id@instance
	deps   connectors.Deps
	cfg    testConfig
	health *kit.Health
}

// descriptor is the test platform's descriptor; instance tells gateways
// apart in the probe.
func descriptor(instance string) connectors.Descriptor {
	return connectors.Descriptor{
		Platform: "testchat",
		Name:     "Test chat",
		New: func(deps connectors.Deps, s connectors.Settings) (connectors.Connector, error) {
			var cfg testConfig
			if err := s.DecodeSettings(&cfg); err != nil {
				return nil, err
			}
			if cfg.BadNew != "" {
				return nil, errors.New(cfg.BadNew)
			}
			// The contract: every field of Deps is set.
			if deps.ID == "" || deps.Platform == "" || deps.Region == "" || deps.Logger == nil ||
				deps.Publisher == nil || deps.Rejects == nil || deps.Cursors == nil || deps.Conversations == nil ||
				deps.Ledger == nil || deps.Media == nil || deps.DataDir == "" ||
				deps.HTTPClient == nil || deps.Now == nil || deps.OnHealth == nil {
				return nil, fmt.Errorf("incomplete deps: %+v", deps)
			}
			if cfg.Probe == nil {
				cfg.Probe = newProbe()
			}
			c := &testConn{name: deps.ID + "@" + instance, deps: deps, cfg: cfg}
			c.health = kit.NewHealth(deps)
			if cfg.Webhook {
				return &webhookConn{c}, nil
			}
			return c, nil
		},
	}
}

func (c *testConn) Run(ctx context.Context) error {
	n := c.cfg.Probe.started(c)
	defer c.cfg.Probe.stopped(c)
	if n <= c.cfg.PanicRuns {
		panic("nil map write in the platform SDK")
	}
	if n <= c.cfg.FailRuns {
		var err error = errors.New(c.cfg.FailWith)
		if c.cfg.FailState != "" {
			opErr := c.health.Fatal(c.cfg.FailState, c.cfg.FailWith, "renew the token", err)
			if c.cfg.NeedsOperator {
				err = opErr
			}
		}
		return err
	}
	c.health.Begin()
	c.health.Started()
	<-ctx.Done()
	return nil
}

func (c *testConn) Health() connectors.Health { return c.health.Get() }

func (c *testConn) Exclusive() bool { return c.cfg.Exclusive }

func (c *testConn) SendsNeedSession() bool { return c.cfg.Affinity }

func (c *testConn) Policy(connectors.Address) connectors.Policy { return connectors.Policy{} }

func (c *testConn) Plan(*normalize.Reply, connectors.Address, connectors.Admission) ([]connectors.Part, error) {
	return nil, connectors.Permanent(normalize.ErrUnsupported, "", errors.New("test connector sends nothing"))
}

func (c *testConn) SendPart(context.Context, connectors.Address, connectors.Part) (connectors.SentPart, error) {
	return connectors.SentPart{}, connectors.Permanent(normalize.ErrUnsupported, "", errors.New("test connector sends nothing"))
}

func (c *testConn) FetchMedia(context.Context, string) (io.ReadCloser, connectors.MediaInfo, error) {
	return io.NopCloser(strings.NewReader("bytes")), connectors.MediaInfo{MimeType: "text/plain", Size: 5}, nil
}

// webhookConn adds a webhook whose handler answers 204.
type webhookConn struct{ *testConn }

func (w *webhookConn) Webhook() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusNoContent) })
}
