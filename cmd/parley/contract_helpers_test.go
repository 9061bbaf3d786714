package main

// A black-box test of Parley's public contract, whose sections (§1 to §6)
// the subtests are named after and quote: it builds the real binary once and
// holds it, as a separate program, to the clauses that can be checked from
// outside with the Telegram connector and its simulator. Every wait is
// bounded; everything listens on 127.0.0.1.
//
// Four groups run concurrently (from goroutines, so that tests which mostly
// wait are not throttled by -parallel):
//   - CLI: exit codes, --help, --config defaults, config check/example,
//     version, demo (and demo --keep), commands that cannot reach NATS;
//   - Gateway: one `parley serve` (embedded NATS with a listener, Telegram in
//     webhook mode behind the simulator with its flood limits on) shared by
//     the checks of §1 (tail, reply, dlq, SIGINT), §2 (secrets), §3 (HTTP),
//     §4 (NATS), §5 (JSON) and §6 (guarantees);
//   - Outage: a `parley serve --region` on an external NATS server that the
//     test stops and restarts; then the gateway restarts (a durable retry
//     resumes) and its connector is renamed (ids stay);
//   - Scale: two instances on one NATS and one polling Telegram connector:
//     one poller at a time, moved when its instance is killed.
//
// A clause Parley does not keep fails its subtest with the contract's words
// and what was observed; docs/contract-differences.md is respected.
//
// This file holds the entry point and what the sections share: processes,
// HTTP, the event collector and the shared gateway. Each section of the
// contract has its file: contract_cli_test.go (§1), contract_config_test.go
// (§2), contract_http_test.go (§3), contract_nats_test.go (§4),
// contract_json_test.go (§5) and contract_guarantees_test.go (§6, with the
// Outage and Scale groups).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
)

// ---------------------------------------------------------------------------
// The test

func TestContract(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildParley(t)
	par := newPar(t)
	defer par.wait()
	par.run("CLI", func(t *testing.T) {
		contractCLI(t, bin)
	})
	par.run("Gateway", func(t *testing.T) {
		contractGateway(t, bin)
	})
	par.run("Outage", func(t *testing.T) {
		contractOutage(t, bin)
	})
	par.run("Scale", func(t *testing.T) {
		contractScale(t, bin)
	})
}

// ---------------------------------------------------------------------------
// Concurrency

// par runs subtests concurrently from goroutines (t.Run allows it), so that
// tests that mostly wait are not limited by -parallel (GOMAXPROCS).
type par struct {
	t  *testing.T
	wg sync.WaitGroup
}

func newPar(t *testing.T) *par { return &par{t: t} }

func (p *par) run(name string, f func(t *testing.T)) {
	p.wg.Go(func() { p.t.Run(name, f) })
}

func (p *par) wait() { p.wg.Wait() }

// ---------------------------------------------------------------------------
// Processes

// syncBuf is a bytes.Buffer safe for a child's writer goroutine and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	cmd    *exec.Cmd
	stdout *syncBuf
	stderr *syncBuf
	done   chan struct{}
}

// cleanEnv is the test's environment without PARLEY_CONFIG, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PARLEY_CONFIG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startProc starts bin with args in dir (the test's cwd when empty) with
// env (cleanEnv() when nil). The child is killed when the test ends.
func startProc(t testing.TB, bin, dir string, env []string, args ...string) *proc {
	t.Helper()
	if env == nil {
		env = cleanEnv()
	}
	p := &proc{cmd: exec.Command(bin, args...), stdout: &syncBuf{}, stderr: &syncBuf{}, done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting parley %s: %v", strings.Join(args, " "), err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
		}
	})
	return p
}

// wait returns the exit code, or ok=false when the process still runs after d.
func (p *proc) wait(d time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) output() string {
	return "stdout:\n" + p.stdout.String() + "\nstderr:\n" + p.stderr.String()
}

// runCLI runs bin to completion (bounded by timeout) and returns its output
// and exit code.
func runCLI(t *testing.T, bin, dir string, env []string, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := startProc(t, bin, dir, env, args...)
	code, ok := p.wait(timeout)
	if !ok {
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("parley %s did not finish within %s\n%s", strings.Join(args, " "), timeout, p.output())
	}
	return p.stdout.String(), p.stderr.String(), code
}

// stopWith sends sig and wants exit 0 within 30s.
func stopWith(t *testing.T, p *proc, sig syscall.Signal, what string) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", what, err)
	}
	code, ok := p.wait(30 * time.Second)
	if !ok {
		t.Fatalf("§1 `parley serve` must stop cleanly on %v: %s still runs 30s later\n%s", sig, what, p.stderr.String())
	}
	if code != exitOK {
		t.Errorf("§1 `parley serve` must stop cleanly on %v with exit 0: %s exited %d\n%s", sig, what, code, p.stderr.String())
	}
}

func writeFile(t testing.TB, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitReadyProc waits until p, a `parley serve`, answers /readyz with 200.
func waitReadyProc(t testing.TB, base string, p *proc) {
	t.Helper()
	err := waitCond(30*time.Second, func() bool { return !p.running() || readyzStatus(base) == http.StatusOK })
	if !p.running() {
		t.Fatalf("parley serve exited before it was ready (exit %d)\n%s", p.cmd.ProcessState.ExitCode(), p.output())
	}
	if err != nil {
		t.Fatalf("parley serve not ready within 30s\n%s", p.output())
	}
}

// readyzStatus is the status of GET base/readyz, or 0 when there is no
// answer (not listening yet, or any more).
func readyzStatus(base string) int {
	resp, err := httpc.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// negativeCheckPause is how long pauseForNegativeCheck gives the thing a
// negative check rules out to happen.
const negativeCheckPause = 300 * time.Millisecond

// pauseForNegativeCheck is the one fixed wait of these tests. A check that
// something did not happen, where no event marks that it can no longer
// happen (a process that must keep running), first gives it
// negativeCheckPause to happen. Call it once per such check, right before
// it; everything else waits on a condition (waitCond, collector.waitFor,
// waitCommandsSettled), so a slow machine makes tests slower, not flaky.
func pauseForNegativeCheck() { time.Sleep(negativeCheckPause) }

// waitCommandsSettled waits until stream, a region's PARLEY_CMD_<REGION>
// (work-queue retention), holds no reply command on subject: the outbox has
// acknowledged each one, sent or dead-lettered, and JetStream has removed
// it, so none of them can be delivered again. After it, what a platform
// received for that conversation is final. A subject never used looks
// settled too: the caller makes sure that commands were stored on it.
func waitCommandsSettled(t *testing.T, js jetstream.JetStream, stream, subject string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	var last error
	if err := waitCond(d, func() bool {
		_, last = s.GetLastMsgForSubject(ctx, subject)
		return errors.Is(last, jetstream.ErrMsgNotFound)
	}); err != nil {
		t.Fatalf("%s still holds a reply command on %s (%v): the outbox has not settled it within %s", stream, subject, last, d)
	}
}

// ---------------------------------------------------------------------------
// HTTP

var httpc = &http.Client{Timeout: 20 * time.Second}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (r httpResult) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

func doHTTP(t *testing.T, method, url, token string, header map[string]string, body io.Reader) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, b}
}

// checkErrorShape checks the contract's error body {"error":{"code","message"}}.
func checkErrorShape(t *testing.T, what string, r httpResult) {
	t.Helper()
	var body struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error == nil || body.Error.Code == nil || body.Error.Message == nil ||
		*body.Error.Code == "" || *body.Error.Message == "" {
		t.Errorf("§3 %s: want a JSON body {\"error\":{\"code\",\"message\"}}, got %s", what, r)
	}
}

// ---------------------------------------------------------------------------
// Events

type ceEvent struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            struct {
		Region       string `json:"region"`
		Platform     string `json:"platform"`
		Connector    string `json:"connector"`
		Conversation *struct {
			ID         string `json:"id"`
			PlatformID string `json:"platform_id"`
			Kind       string `json:"kind"`
		} `json:"conversation"`
		Sender *struct {
			ID         string `json:"id"`
			PlatformID string `json:"platform_id"`
			Name       string `json:"name"`
			Username   string `json:"username"`
			Language   string `json:"language"`
		} `json:"sender"`
		Message *struct {
			PlatformID  string `json:"platform_id"`
			Text        string `json:"text"`
			Attachments []struct {
				Kind     string `json:"kind"`
				MediaID  string `json:"media_id"`
				MimeType string `json:"mime_type"`
				Size     int64  `json:"size"`
				Status   string `json:"status"`
			} `json:"attachments"`
			Postback *struct {
				ID string `json:"id"`
			} `json:"postback"`
		} `json:"message"`
		Reaction *struct {
			TargetPlatformID string `json:"target_platform_id"`
			Emoji            string `json:"emoji"`
		} `json:"reaction"`
		Reply *struct {
			ID          string   `json:"id"`
			Attempts    int      `json:"attempts"`
			PlatformIDs []string `json:"platform_ids"`
			Error       *struct {
				Code         string `json:"code"`
				Message      string `json:"message"`
				PlatformCode string `json:"platform_code"`
				Attempts     int    `json:"attempts"`
			} `json:"error"`
		} `json:"reply"`
		Media *struct {
			ID              string `json:"id"`
			AttachmentIndex int    `json:"attachment_index"`
			MimeType        string `json:"mime_type"`
			Size            int64  `json:"size"`
			SHA256          string `json:"sha256"`
		} `json:"media"`
		ReceivedAt string `json:"received_at"`
	} `json:"data"`
}

type evMsg struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Raw     []byte
	E       ceEvent
	M       map[string]any
	Err     error
}

func newEvMsg(seq uint64, subject string, h nats.Header, data []byte) *evMsg {
	m := &evMsg{Seq: seq, Subject: subject, Header: h, Raw: slices.Clone(data)}
	if err := json.Unmarshal(data, &m.E); err != nil {
		m.Err = err
	} else if err := json.Unmarshal(data, &m.M); err != nil {
		m.Err = err
	}
	return m
}

func (m *evMsg) String() string { return m.Subject + " " + string(m.Raw) }

func (m *evMsg) text() string {
	if m.E.Data.Message == nil {
		return ""
	}
	return m.E.Data.Message.Text
}

func (m *evMsg) replyID() string {
	if m.E.Data.Reply == nil {
		return ""
	}
	return m.E.Data.Reply.ID
}

// dig returns the value at a path of object keys in the raw JSON, and whether
// every key was present.
func (m *evMsg) dig(keys ...string) (any, bool) {
	var v any = m.M
	for _, k := range keys {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// collector follows a stream from its start and keeps every message.
type collector struct {
	mu      sync.Mutex
	msgs    []*evMsg
	changed chan struct{}
}

func newCollector(t *testing.T, js jetstream.JetStream, stream, filter string) *collector {
	t.Helper()
	c := &collector{changed: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatalf("following %s: %v", stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		var seq uint64
		if md != nil {
			seq = md.Sequence.Stream
		}
		e := newEvMsg(seq, m.Subject(), m.Headers(), m.Data())
		c.mu.Lock()
		c.msgs = append(c.msgs, e)
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("following %s: %v", stream, err)
	}
	t.Cleanup(cc.Stop)
	return c
}

func (c *collector) all() []*evMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func (c *collector) filter(pred func(*evMsg) bool) []*evMsg {
	var out []*evMsg
	for _, m := range c.all() {
		if pred(m) {
			out = append(out, m)
		}
	}
	return out
}

// waitFor waits up to d for an event matching pred.
func (c *collector) waitFor(t *testing.T, d time.Duration, what string, pred func(*evMsg) bool) *evMsg {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ch := c.changed
		for _, m := range c.msgs {
			if pred(m) {
				c.mu.Unlock()
				return m
			}
		}
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no %s within %s", what, d)
			return nil
		}
	}
}

// scanStream reads a stream's messages (up to its last sequence now),
// newest first, and returns those matching pred.
func scanStream(t *testing.T, js jetstream.JetStream, stream string, pred func(*evMsg) bool) []*evMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	var out []*evMsg
	for seq := info.State.LastSeq; seq >= info.State.FirstSeq && seq > 0; seq-- {
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading %s seq %d: %v", stream, seq, err)
		}
		m := newEvMsg(raw.Sequence, raw.Subject, raw.Header, raw.Data)
		if pred(m) {
			out = append(out, m)
		}
	}
	return out
}

func connectNATS(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("contract-test"), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond),
		nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// ---------------------------------------------------------------------------
// The shared gateway

const (
	gwRegion    = "us-east"
	gwConnector = "tg-main"
	gwToken     = "5151:CONTRACT-BOT-SECRET"
	gwSecret    = "contract-webhook-secret"
	gwAPIToken  = "contract-api-token"
	gwMaxBody   = 65536
)

type gateway struct {
	bin     string
	dir     string
	cfgPath string
	base    string
	natsURL string
	sim     *telegramsim.Server
	proc    *proc
	nc      *nats.Conn
	js      jetstream.JetStream
	events  *collector

	cmdMu   sync.Mutex
	cmdMsgs []*nats.Msg // every reply command published on the region's cmd subjects

	replyMu  sync.Mutex
	replyIDs map[string]bool // reply ids submitted; true when replayed from the DLQ

	injected429 atomic.Int32
	burst429    atomic.Int32 // 429s met by the burst test, reported there
	updateID    atomic.Int64
}

func (g *gateway) submitted(id string, replayed bool) {
	g.replyMu.Lock()
	defer g.replyMu.Unlock()
	g.replyIDs[id] = g.replyIDs[id] || replayed
}

func user(chat int64) models.User {
	return models.User{ID: chat, FirstName: "Ana", LastName: "Contract", Username: "ana_contract", LanguageCode: "es"}
}

// inbound makes the simulator deliver a text from chat and waits for its
// message.received event.
func (g *gateway) inbound(t *testing.T, chat int64, text string) *evMsg {
	t.Helper()
	g.sim.Enqueue(g.sim.UserText(chat, user(chat), text))
	return g.events.waitFor(t, 20*time.Second, "message.received "+strconv.Quote(text), func(m *evMsg) bool {
		return m.E.Type == "parley.message.received" && m.text() == text
	})
}

func (g *gateway) api(t *testing.T, method, path, token string, body any) httpResult {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	return doHTTP(t, method, g.base+path, token, map[string]string{"Content-Type": "application/json"}, r)
}

// reply posts a reply command and wants 202.
func (g *gateway) reply(t *testing.T, body map[string]any) {
	t.Helper()
	r := g.api(t, http.MethodPost, "/v1/replies", gwAPIToken, body)
	if r.status != http.StatusAccepted {
		t.Fatalf("§3 POST /v1/replies %v: %s, want 202", body["id"], r)
	}
	g.submitted(body["id"].(string), false)
}

func (g *gateway) status(t *testing.T, replyID string, d time.Duration) *evMsg {
	t.Helper()
	return g.events.waitFor(t, d, "reply.sent/reply.failed of "+replyID, func(m *evMsg) bool {
		return strings.HasPrefix(m.E.Type, "parley.reply.") && m.replyID() == replyID
	})
}

// settled waits until the outbox holds no reply command for conv (see
// waitCommandsSettled), once a command for it has been seen on its subject.
func (g *gateway) settled(t *testing.T, conv string) {
	t.Helper()
	subject := fmt.Sprintf("parley.cmd.%s.telegram.%s.%s.send", gwRegion, gwConnector, conv)
	seen := func() bool {
		g.cmdMu.Lock()
		defer g.cmdMu.Unlock()
		return slices.ContainsFunc(g.cmdMsgs, func(m *nats.Msg) bool { return m.Subject == subject })
	}
	if err := waitCond(10*time.Second, seen); err != nil {
		t.Fatalf("no reply command seen on %s: %v", subject, err)
	}
	waitCommandsSettled(t, g.js, "PARLEY_CMD_US_EAST", subject, 30*time.Second)
}

func (g *gateway) webhook(t *testing.T, secret string, body []byte) httpResult {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	if secret != "" {
		h["X-Telegram-Bot-Api-Secret-Token"] = secret
	}
	return doHTTP(t, http.MethodPost, g.base+"/webhooks/"+gwConnector, "", h, bytes.NewReader(body))
}

// updateJSON is a Telegram update with a private text message, as the Bot
// API posts it to a webhook.
func updateJSON(updateID, chat int64, messageID int, date int64, text string) []byte {
	u := map[string]any{
		"update_id": updateID,
		"message": map[string]any{
			"message_id": messageID, "date": date, "text": text,
			"chat": map[string]any{"id": chat, "type": "private", "first_name": "Web", "username": "web_user"},
			"from": map[string]any{"id": chat, "is_bot": false, "first_name": "Web", "username": "web_user"},
		},
	}
	b, _ := json.Marshal(u)
	return b
}

func startGateway(t *testing.T, bin string) *gateway {
	t.Helper()
	sim, err := telegramsim.NewServer(telegramsim.Options{
		Token: gwToken, WebhookRetryMin: 20 * time.Millisecond, WebhookRetryMax: 200 * time.Millisecond,
		// Telegram's own flood limits stay on: 1 message/s per chat, 30/s per bot.
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	httpAddr, natsAddr := mustFreeAddr(t), mustFreeAddr(t)
	g := &gateway{
		bin: bin, dir: dir, sim: sim, base: "http://" + httpAddr, natsURL: "nats://" + natsAddr,
		replyIDs: map[string]bool{},
	}
	g.updateID.Store(900000)
	g.cfgPath = writeFile(t, filepath.Join(dir, "parley.yaml"), fmt.Sprintf(`data_dir: %q
log: {level: debug, format: text}
nats:
  embedded: {listen: %q, sync: interval}
  replicas: 1
http:
  listen: %q
  public_url: "http://%s"
  max_body_bytes: %d
api:
  tokens: ["${CT_API_TOKEN}"]
connectors:
  - id: %s
    platform: telegram
    region: %s
    telegram:
      token: "${CT_TG_TOKEN}"
      mode: webhook
      webhook_secret: "${CT_TG_SECRET}"
      api_url: %q
  - id: tg-off
    platform: telegram
    region: %s
    enabled: false
    telegram:
      token: "5152:OFF"
      mode: webhook
      webhook_secret: off-secret
      api_url: %q
`, filepath.Join(dir, "data"), natsAddr, httpAddr, httpAddr, gwMaxBody, gwConnector, gwRegion, sim.URL, gwRegion, sim.URL))
	env := gwEnv(g.cfgPath)
	g.proc = startProc(t, bin, dir, env, "serve")
	waitReadyProc(t, g.base, g.proc)
	if err := waitCond(15*time.Second, func() bool { return sim.WebhookInfo().URL != "" }); err != nil {
		t.Fatalf("parley did not register its webhook: %v\n%s", err, g.proc.output())
	}
	g.nc, g.js = connectNATS(t, g.natsURL)
	sub, err := g.nc.Subscribe("parley.cmd."+gwRegion+".>", func(m *nats.Msg) {
		g.cmdMu.Lock()
		g.cmdMsgs = append(g.cmdMsgs, m)
		g.cmdMu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := g.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	g.events = newCollector(t, g.js, "PARLEY_EVT_US_EAST", "parley.evt."+gwRegion+".>")
	return g
}

// gwEnv is the environment of every child run against the shared gateway:
// the secrets come from variables, and PARLEY_CONFIG names its config.
func gwEnv(cfgPath string) []string {
	return cleanEnv("PARLEY_CONFIG="+cfgPath, "CT_API_TOKEN="+gwAPIToken, "CT_TG_TOKEN="+gwToken, "CT_TG_SECRET="+gwSecret)
}

// contractGateway runs the checks of every section against one shared
// gateway, in this order: the later ones look back at what the earlier ones
// left (every event stored, every reply submitted, every 429 met), and the
// SIGINT check stops the gateway, so only the check of its whole output may
// follow it.
func contractGateway(t *testing.T, bin string) {
	g := startGateway(t, bin)

	t.Run("§3 health, readiness and metrics", func(t *testing.T) { gwHealth(t, g) })
	t.Run("§4 streams and buckets", func(t *testing.T) { gwStreamsAndBuckets(t, g) })
	t.Run("§3 webhooks", func(t *testing.T) { gwWebhooks(t, g) })
	t.Run("§5 events", func(t *testing.T) { gwEventShape(t, g) })
	t.Run("§3 GET /v1/conversations/{id}", func(t *testing.T) { gwConversation(t, g) })
	t.Run("§3 POST /v1/replies", func(t *testing.T) { gwReplies(t, g) })
	t.Run("§3 GET /v1/media/{id}", func(t *testing.T) { gwMedia(t, g) })

	// Deliveries run in parallel, each on its own chat.
	t.Run("delivery", func(t *testing.T) {
		par := newPar(t)
		defer par.wait()
		par.run("§6 ordered per conversation under the 1 msg/s limit, others in parallel", func(t *testing.T) { gwOrderedPerConversation(t, g) })
		par.run("§5 a long text is split, reply.sent has every platform id in order", func(t *testing.T) { gwLongTextSplit(t, g) })
		par.run("§6 a 429 retry_after is honoured", func(t *testing.T) { gwRetryAfterHonoured(t, g) })
		par.run("§6 transient failures are retried, the reply is sent once", func(t *testing.T) { gwTransientRetried(t, g) })
		par.run("§4 a reply command published on NATS is delivered", func(t *testing.T) { gwReplyCommandOnNATS(t, g) })
		par.run("§1 reply prints reply.sent and exits 0", func(t *testing.T) { gwReplyCLI(t, g) })
		par.run("§1 tail prints events as they arrive", func(t *testing.T) { gwTail(t, g) })
		par.run("§1 reply.failed, dlq list, purge, replay", func(t *testing.T) { gwDLQ(t, g) })
	})

	t.Run("§6 a burst to 60 chats respects the per-bot limit, every reply sent once", func(t *testing.T) { gwBurstPerBotLimit(t, g) })
	t.Run("§4 every message has Nats-Msg-Id and Content-Type", func(t *testing.T) { gwMessageHeaders(t, g) })
	t.Run("§4 §5 every stored event is well-formed", func(t *testing.T) { gwEventsWellFormed(t, g) })
	t.Run("§5 every reply command ends in exactly one status", func(t *testing.T) { gwOneStatusPerReply(t, g) })
	t.Run("§6 per-chat rate limits are respected (outside the burst)", func(t *testing.T) { gwPerChatLimit(t, g) })
	t.Run("§1 serve on SIGINT: webhooks 503, in-flight work finishes, exit 0", func(t *testing.T) { gwSIGINT(t, g) })
	t.Run("§2 secrets never appear in logs or events", func(t *testing.T) { gwSecretsHidden(t, g) })
}

func copyMap(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
