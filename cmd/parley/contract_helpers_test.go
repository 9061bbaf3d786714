package main

// A black-box test of CONTRACT.md (v1): it builds the real binary once and
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

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	"github.com/parley-gateway/parley/internal/bustest"
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
func startProc(t *testing.T, bin, dir string, env []string, args ...string) *proc {
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

func writeFile(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitReadyProc(t *testing.T, base string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if !p.running() {
			t.Fatalf("parley serve exited before it was ready (exit %d)\n%s", p.cmd.ProcessState.ExitCode(), p.output())
		}
		resp, err := httpc.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("parley serve not ready within 30s\n%s", p.output())
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

// contractKind is the subject kind CONTRACT §4 gives each event type.
func contractKind(typ string) string {
	switch {
	case strings.HasPrefix(typ, "parley.message."), typ == "parley.postback.received":
		return "message"
	case strings.HasPrefix(typ, "parley.reaction."):
		return "reaction"
	case strings.HasPrefix(typ, "parley.receipt."):
		return "receipt"
	case strings.HasPrefix(typ, "parley.reply."):
		return "status"
	case strings.HasPrefix(typ, "parley.media."):
		return "media"
	case typ == "parley.connector.state":
		return "connector"
	}
	return ""
}

var contractTypes = []string{
	"parley.message.received", "parley.message.edited", "parley.message.deleted", "parley.message.echo",
	"parley.postback.received", "parley.reaction.added", "parley.reaction.removed", "parley.receipt.delivered",
	"parley.receipt.read", "parley.reply.sent", "parley.reply.failed", "parley.media.stored", "parley.media.failed",
	"parley.connector.state",
}

var contractErrorCodes = []string{
	"invalid_reply", "unknown_conversation", "window_closed", "recipient_unavailable", "unauthorized",
	"too_large", "unsupported", "rate_limited", "expired", "platform_error",
}

var (
	idRe         = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	rfc3339UTCRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)
)

func validParleyID(prefix, s string) bool {
	return strings.HasPrefix(s, prefix) && len(s) > len(prefix) && idRe.MatchString(s)
}

// checkEvent checks one stored event against §4 (subject, headers) and §5
// (CloudEvents fields) and returns every violation.
func checkEvent(m *evMsg, region, platform, connector string) []string {
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	if m.Err != nil {
		return []string{"§5 not JSON: " + m.Err.Error()}
	}
	e := m.E
	// §4 subject.
	tok := strings.Split(m.Subject, ".")
	conv := e.Subject
	if conv == "" {
		conv = "_"
	}
	want := strings.Join([]string{"parley", "evt", region, platform, connector, conv, contractKind(e.Type)}, ".")
	if m.Subject != want || len(tok) != 7 {
		add("§4 subject %q, want parley.evt.<region>.<platform>.<connector>.<conv>.<kind> = %q", m.Subject, want)
	}
	// §4 headers.
	if got := m.Header.Get("Nats-Msg-Id"); got != e.ID {
		add("§4 Nats-Msg-Id %q, want the event id %q", got, e.ID)
	}
	if got := m.Header.Get("Content-Type"); got != "application/cloudevents+json" {
		add("§4 Content-Type %q, want application/cloudevents+json", got)
	}
	// §5 CloudEvents.
	if e.SpecVersion != "1.0" {
		add("§5 specversion %q", e.SpecVersion)
	}
	if !validParleyID("e_", e.ID) {
		add("§5 id %q is not e_… subject-safe ≤64", e.ID)
	}
	if wantSrc := "parley:" + region + ":" + platform + ":" + connector; e.Source != wantSrc {
		add("§5 source %q, want %q", e.Source, wantSrc)
	}
	if !slices.Contains(contractTypes, e.Type) {
		add("§5 type %q is not a contract type", e.Type)
	}
	if e.Type != "parley.connector.state" && !validParleyID("c_", e.Subject) {
		add("§5 subject %q is not a conversation id c_…", e.Subject)
	}
	if !rfc3339UTCRe.MatchString(e.Time) {
		add("§5 time %q is not RFC 3339 UTC", e.Time)
	}
	if e.DataContentType != "application/json" {
		add("§5 datacontenttype %q", e.DataContentType)
	}
	d := e.Data
	if d.Region != region || d.Platform != platform || d.Connector != connector {
		add("§5 data region/platform/connector %q/%q/%q", d.Region, d.Platform, d.Connector)
	}
	if !rfc3339UTCRe.MatchString(d.ReceivedAt) {
		add("§5 data.received_at %q is not RFC 3339 UTC", d.ReceivedAt)
	}
	if _, ok := m.dig("data", "window_expires_at"); !ok {
		add("§5 data.window_expires_at missing")
	}
	switch contractKind(e.Type) {
	case "message":
		if d.Message == nil {
			add("§5 %s without data.message", e.Type)
			break
		}
		for _, k := range []string{"platform_id", "text", "reply_to", "attachments", "location", "contacts", "postback"} {
			if _, ok := m.dig("data", "message", k); !ok {
				add("§5 data.message.%s missing", k)
			}
		}
		for _, k := range []string{"id", "platform_id", "kind", "title", "thread_id"} {
			if _, ok := m.dig("data", "conversation", k); !ok {
				add("§5 data.conversation.%s missing", k)
			}
		}
		if d.Conversation != nil && d.Conversation.ID != e.Subject {
			add("§5 data.conversation.id %q differs from subject %q", d.Conversation.ID, e.Subject)
		}
		if d.Sender != nil {
			for _, k := range []string{"id", "platform_id", "name", "username", "phone", "language", "is_business"} {
				if _, ok := m.dig("data", "sender", k); !ok {
					add("§5 data.sender.%s missing", k)
				}
			}
			if !validParleyID("u_", d.Sender.ID) {
				add("§5 sender id %q is not u_…", d.Sender.ID)
			}
		}
		atts, _ := m.dig("data", "message", "attachments")
		list, _ := atts.([]any)
		for i, a := range d.Message.Attachments {
			if !validParleyID("m_", a.MediaID) {
				add("§5 attachment media_id %q is not m_…", a.MediaID)
			}
			if !slices.Contains([]string{"image", "video", "audio", "voice", "file", "sticker"}, a.Kind) ||
				!slices.Contains([]string{"pending", "stored", "unavailable"}, a.Status) {
				add("§5 attachment kind %q / status %q", a.Kind, a.Status)
			}
			obj, _ := list[i].(map[string]any)
			for _, k := range []string{"kind", "media_id", "mime_type", "size", "filename", "caption", "width", "height", "duration_ms", "status"} {
				if _, ok := obj[k]; !ok {
					add("§5 attachment field %q missing", k)
				}
			}
		}
	case "reaction":
		if d.Reaction == nil {
			add("§5 %s without data.reaction", e.Type)
		}
	case "status":
		if d.Reply == nil {
			add("§5 %s without data.reply", e.Type)
			break
		}
		for _, k := range []string{"id", "attempts", "platform_ids", "error"} {
			if _, ok := m.dig("data", "reply", k); !ok {
				add("§5 data.reply.%s missing", k)
			}
		}
		if e.Type == "parley.reply.failed" {
			if d.Reply.Error == nil {
				add("§5 reply.failed without error")
				break
			}
			if !slices.Contains(contractErrorCodes, d.Reply.Error.Code) {
				add("§5 reply.failed error.code %q is not a contract code", d.Reply.Error.Code)
			}
			for _, k := range []string{"code", "message", "platform_code", "attempts"} {
				if _, ok := m.dig("data", "reply", "error", k); !ok {
					add("§5 data.reply.error.%s missing", k)
				}
			}
		}
	case "media":
		if d.Media == nil {
			add("§5 %s without data.media", e.Type)
			break
		}
		for _, k := range []string{"id", "attachment_index", "mime_type", "size", "sha256"} {
			if _, ok := m.dig("data", "media", k); !ok && e.Type == "parley.media.stored" {
				add("§5 data.media.%s missing", k)
			}
		}
	case "connector":
		// Documented difference: the state is in data.connector_state.
		if _, ok := m.dig("data", "connector_state", "state"); !ok {
			add("§5 connector.state without data.connector_state.state (docs/contract-differences.md)")
		}
	}
	return bad
}

// ---------------------------------------------------------------------------
// §1 Command line

func contractCLI(t *testing.T, bin string) {
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "good.yaml"), `
api:
  tokens: ["${CT_API_TOKEN}"]
connectors:
  - id: tg-ok
    platform: telegram
    region: eu
    telegram:
      token: "${CT_TG_TOKEN}"
  - id: tg-us
    platform: telegram
    region: us-east
    telegram:
      token: "2:us-secret"
  - id: tg-off
    platform: telegram
    region: latam
    enabled: false
    telegram:
      token: "3:off-secret"
`)
	env := cleanEnv("CT_API_TOKEN=api-secret-value", "CT_TG_TOKEN=1:tg-secret-value")
	par := newPar(t)
	defer par.wait()

	par.run("§1 --help exits 0 for every command", func(t *testing.T) {
		for _, args := range [][]string{
			{"--help"}, {"serve", "--help"}, {"demo", "--help"}, {"config", "--help"}, {"config", "check", "--help"},
			{"config", "example", "--help"}, {"tail", "--help"}, {"reply", "--help"}, {"dlq", "--help"},
			{"dlq", "list", "--help"}, {"dlq", "replay", "--help"}, {"dlq", "purge", "--help"}, {"healthcheck", "--help"}, {"version", "--help"},
		} {
			out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, args...)
			if code != exitOK {
				t.Errorf("§1 every subcommand has --help: `parley %s` exited %d\n%s%s", strings.Join(args, " "), code, out, errOut)
			}
			if strings.TrimSpace(out+errOut) == "" {
				t.Errorf("`parley %s` printed no help", strings.Join(args, " "))
			}
		}
	})

	par.run("§1 usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{}, {"frobnicate"}, {"serve", "--no-such-flag"}, {"config"}, {"config", "nope"}, {"dlq"},
			{"config", "example", "icq"}, {"reply", "--config", good, "--conversation", "c_x"},
			{"serve", "--config", filepath.Join(dir, "missing.yaml")},
			{"serve", "--config", writeFile(t, filepath.Join(dir, "unknown-key.yaml"), "api: {tokens: [x]}\nconnectors: []\nfrobnicate: 1\n")},
			{"config", "check", "--config", filepath.Join(dir, "unknown-key.yaml")},
		} {
			out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, args...)
			if code != exitUsage {
				t.Errorf("§1 exit 2 on a usage error: `parley %s` exited %d\n%s%s", strings.Join(args, " "), code, out, errOut)
			}
		}
	})

	par.run("§1 version prints version, commit, Go version", func(t *testing.T) {
		out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "version")
		if code != exitOK {
			t.Fatalf("version exited %d: %s", code, errOut)
		}
		for _, s := range []string{"parley ", "commit", "go1."} {
			if !strings.Contains(out, s) {
				t.Errorf("§1 `parley version` (version, commit, Go version) lacks %q:\n%s", s, out)
			}
		}
	})

	par.run("§1 config check prints per region the connectors that would run", func(t *testing.T) {
		out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "config", "check", "--config", good)
		if code != exitOK {
			t.Fatalf("config check of a valid file exited %d\n%s%s", code, out, errOut)
		}
		sections := map[string]string{}
		var cur string
		for _, line := range strings.Split(out, "\n") {
			if r, ok := strings.CutPrefix(line, "region "); ok {
				cur = strings.TrimSuffix(strings.TrimSpace(r), ":")
				continue
			}
			if strings.HasPrefix(line, "  ") && cur != "" {
				sections[cur] += line + "\n"
			} else {
				cur = ""
			}
		}
		if !strings.Contains(sections["eu"], "tg-ok") || !strings.Contains(sections["us-east"], "tg-us") {
			t.Errorf("§1 config check must print, per region, the connectors that would run; got:\n%s", out)
		}
		for r, s := range sections {
			if strings.Contains(s, "tg-off") {
				t.Errorf("§1 config check lists disabled tg-off as running in region %s:\n%s", r, out)
			}
		}
		if strings.Contains(out+errOut, "secret-value") {
			t.Errorf("§2 a secret appears in config check output:\n%s%s", out, errOut)
		}
	})

	par.run("§1 config check lists every problem with its path", func(t *testing.T) {
		bad := writeFile(t, filepath.Join(t.TempDir(), "bad.yaml"), `
api:
  tokens: ["x"]
connectors:
  - id: tg-ok
    platform: telegram
    region: eu
    telegram:
      token: "1:abc"
  - id: tg-bad
    platform: telegram
    region: eu
    telegram:
      mode: webhook
`)
		_, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "config", "check", "--config", bad)
		if code != exitUsage {
			t.Errorf("§1 an invalid config is a configuration error (exit 2); got %d", code)
		}
		lines := strings.Split(errOut, "\n")
		for _, want := range []string{"connectors[1] (tg-bad): telegram.token: required", "connectors[1] (tg-bad): telegram.webhook_secret: "} {
			found := false
			for _, l := range lines {
				if strings.HasPrefix(strings.TrimSpace(l), want) {
					found = true
				}
			}
			if !found {
				t.Errorf("§1 config check must list every problem with its path (`connectors[1] (fb-latam): messenger.app_secret: required`): no line %q in:\n%s", want, errOut)
			}
		}
	})

	par.run("§1 config check lists every problem even next to an unknown key", func(t *testing.T) {
		bad := writeFile(t, filepath.Join(t.TempDir(), "bad.yaml"), `
api:
  tokens: ["x"]
connectors:
  - id: tg-bad
    platform: telegram
    region: eu
    telegram:
      mode: webhook
      bogus: 1
`)
		_, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "config", "check", "--config", bad)
		if code != exitUsage {
			t.Errorf("exit %d, want 2", code)
		}
		for _, want := range []string{"connectors[0] (tg-bad): telegram.bogus: unknown key", "connectors[0] (tg-bad): telegram.token: required",
			"connectors[0] (tg-bad): telegram.webhook_secret: "} {
			if !strings.Contains(errOut, want) {
				t.Errorf("§1 `config check` \"lists every problem with its path\": the block has an unknown key, a missing token and a missing webhook_secret, but %q is not listed; output:\n%s", want, errOut)
			}
		}
	})

	par.run("§1 config check connects nowhere", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var accepted atomic.Int32
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
		cfg := writeFile(t, filepath.Join(t.TempDir(), "p.yaml"), fmt.Sprintf(`
nats:
  url: nats://%[1]s
api:
  tokens: ["x"]
connectors:
  - id: tg-a
    platform: telegram
    region: eu
    telegram:
      token: "1:abc"
      api_url: http://%[1]s
`, ln.Addr()))
		out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, "config", "check", "--config", cfg)
		if code != exitOK {
			t.Fatalf("config check exited %d\n%s%s", code, out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
		if n := accepted.Load(); n > 0 {
			t.Errorf("§1 config check validates \"without connecting anywhere\", but it opened %d connection(s) to nats.url/api_url", n)
		}
	})

	par.run("§1 --config defaults to $PARLEY_CONFIG, else ./parley.yaml", func(t *testing.T) {
		// $PARLEY_CONFIG.
		out, errOut, code := runCLI(t, bin, t.TempDir(), cleanEnv("PARLEY_CONFIG="+good, "CT_API_TOKEN=a", "CT_TG_TOKEN=1:b"), 20*time.Second, "config", "check")
		if code != exitOK || !strings.Contains(out, good) {
			t.Errorf("§1 config check without --config must read $PARLEY_CONFIG (%s): exit %d\n%s%s", good, code, out, errOut)
		}
		// ./parley.yaml.
		cwd := t.TempDir()
		body, _ := os.ReadFile(good)
		writeFile(t, filepath.Join(cwd, "parley.yaml"), string(body))
		out, errOut, code = runCLI(t, bin, cwd, env, 20*time.Second, "config", "check")
		if code != exitOK || !strings.Contains(out, "parley.yaml") {
			t.Errorf("§1 config check without --config and $PARLEY_CONFIG must read ./parley.yaml: exit %d\n%s%s", code, out, errOut)
		}
		// $PARLEY_CONFIG wins over ./parley.yaml.
		other := writeFile(t, filepath.Join(t.TempDir(), "other.yaml"), "api: {tokens: [x]}\nconnectors: []\n")
		out, errOut, code = runCLI(t, bin, cwd, cleanEnv("PARLEY_CONFIG="+other), 20*time.Second, "config", "check")
		if code != exitOK || !strings.Contains(out, other) {
			t.Errorf("§1 $PARLEY_CONFIG must come before ./parley.yaml: exit %d\n%s%s", code, out, errOut)
		}
		// Every command that needs a config reads ./parley.yaml by default.
		empty := t.TempDir()
		for _, args := range [][]string{{"serve"}, {"tail"}, {"reply", "--conversation", "c_x", "--text", "t"}, {"dlq", "list"}, {"config", "check"}} {
			_, errOut, code := runCLI(t, bin, empty, env, 20*time.Second, args...)
			if code != exitUsage || !strings.Contains(errOut, "parley.yaml") {
				t.Errorf("§1 `parley %s` with no config must look for ./parley.yaml and exit 2: exit %d\n%s", strings.Join(args, " "), code, errOut)
			}
		}
	})

	par.run("§1 config example prints a commented sample that passes config check", func(t *testing.T) {
		for _, args := range [][]string{{"config", "example"}, {"config", "example", "telegram"}} {
			out, errOut, code := runCLI(t, bin, dir, env, 20*time.Second, args...)
			if code != exitOK {
				t.Fatalf("`parley %s` exited %d: %s", strings.Join(args, " "), code, errOut)
			}
			if !strings.Contains(out, "platform: telegram") || !strings.Contains(out, "#") {
				t.Errorf("§1 `parley %s` must print a commented sample config:\n%s", strings.Join(args, " "), out)
			}
			p := writeFile(t, filepath.Join(t.TempDir(), "ex.yaml"), out)
			vars := []string{"PARLEY_API_TOKEN=tok", "TELEGRAM_TOKEN=1:abc", "TELEGRAM_WEBHOOK_SECRET=s", "TG_SECRET=s"}
			cout, cerr, code := runCLI(t, bin, dir, cleanEnv(vars...), 20*time.Second, "config", "check", "--config", p)
			if code != exitOK {
				t.Errorf("the output of `parley %s` does not pass config check (exit %d)\n%s%s", strings.Join(args, " "), code, cout, cerr)
			}
		}
	})

	par.run("§1 serve exits 1 on a runtime failure (NATS unreachable), within a bound", func(t *testing.T) {
		d := t.TempDir()
		dead := mustFreeAddr(t)
		cfg := writeFile(t, filepath.Join(d, "p.yaml"), fmt.Sprintf(`
data_dir: %q
nats: {url: "nats://%s"}
http: {listen: %q}
api: {tokens: ["x"]}
connectors:
  - id: tg-a
    platform: telegram
    region: eu
    telegram: {token: "1:abc", api_url: "http://%s"}
`, filepath.Join(d, "data"), dead, mustFreeAddr(t), dead))
		start := time.Now()
		p := startProc(t, bin, d, nil, "serve", "--config", cfg)
		code, ok := p.wait(60 * time.Second)
		if !ok {
			t.Fatalf("§1 serve against an unreachable NATS still runs after 60s (no bounded failure)\n%s", p.output())
		}
		if code != exitRuntime {
			t.Errorf("§1 exit 1 on a runtime failure: serve against an unreachable NATS exited %d after %s\n%s", code, time.Since(start).Round(time.Millisecond), p.output())
		}
		t.Logf("serve against an unreachable NATS exited %d after %s", code, time.Since(start).Round(time.Millisecond))
	})

	par.run("§1 tail, reply and dlq exit 1 when NATS is unreachable, within a bound", func(t *testing.T) {
		dead := mustFreeAddr(t)
		cfg := writeFile(t, filepath.Join(t.TempDir(), "p.yaml"), fmt.Sprintf(`
nats: {url: "nats://%s"}
api: {tokens: ["x"]}
connectors:
  - id: tg-a
    platform: telegram
    region: eu
    telegram: {token: "1:abc"}
`, dead))
		sub := newPar(t)
		for _, args := range [][]string{
			{"tail", "--config", cfg},
			{"reply", "--config", cfg, "--conversation", "c_AAAAAAAAAAAAAAAAAAAAAAAA", "--text", "hi"},
			{"dlq", "list", "--config", cfg},
		} {
			sub.run(args[0], func(t *testing.T) {
				start := time.Now()
				_, errOut, code := runCLI(t, bin, "", env, 45*time.Second, args...)
				if code != exitRuntime {
					t.Errorf("§1 exit 1 on a runtime failure: `parley %s` against an unreachable NATS exited %d after %s: %s",
						strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), errOut)
				}
			})
		}
		sub.wait()
		_, errOut, code := runCLI(t, bin, "", env, 20*time.Second, "tail", "--config", good, "--region", "mars")
		if code != exitUsage {
			t.Errorf("§1 tail --region with a region no connector names is a usage error: exit %d %s", code, errOut)
		}
	})

	par.run("§1 demo runs the whole pipeline and exits 0", func(t *testing.T) {
		out, errOut, code := runCLI(t, bin, t.TempDir(), nil, 60*time.Second, "demo")
		if code != exitOK {
			t.Fatalf("§1 `parley demo` exits 0 when every step held: exit %d\n%s%s", code, out, errOut)
		}
		for _, s := range []string{"429", "dead-letter", "photo", "location", "edit", "reaction", "button"} {
			if !strings.Contains(strings.ToLower(out), s) {
				t.Errorf("§1 the demo transcript lacks %q:\n%s", s, out)
			}
		}
	})

	par.run("§1 demo --keep leaves it running for tail and the HTTP API", func(t *testing.T) {
		p := startProc(t, bin, t.TempDir(), nil, "demo", "--keep")
		re := regexp.MustCompile(`dlq list --config (\S+)`)
		var cfgPath string
		if err := waitCond(60*time.Second, func() bool {
			m := re.FindStringSubmatch(p.stdout.String())
			if m != nil {
				cfgPath = m[1]
			}
			return cfgPath != "" || !p.running()
		}); err != nil || cfgPath == "" {
			t.Fatalf("§1 demo --keep did not print a config to use: %v\n%s", err, p.output())
		}
		time.Sleep(300 * time.Millisecond)
		if !p.running() {
			t.Fatalf("§1 demo --keep stopped\n%s", p.output())
		}
		out, errOut, code := runCLI(t, bin, "", nil, 30*time.Second, "dlq", "list", "--config", cfgPath)
		if code != exitOK || !strings.Contains(out, "recipient_unavailable") {
			t.Errorf("§1 `dlq list` against demo --keep: exit %d\n%s%s", code, out, errOut)
		}
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code, ok := p.wait(30 * time.Second); !ok || code != exitOK {
			t.Errorf("demo --keep on SIGINT: exited=%v code %d\n%s", ok, code, p.output())
		}
	})
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

func contractGateway(t *testing.T, bin string) {
	g := startGateway(t, bin)
	env := gwEnv(g.cfgPath)

	t.Run("§3 health, readiness and metrics", func(t *testing.T) {
		if r := doHTTP(t, http.MethodGet, g.base+"/healthz", "", nil, nil); r.status != http.StatusOK {
			t.Errorf("§3 GET /healthz: %s, want 200", r)
		}
		r := doHTTP(t, http.MethodGet, g.base+"/readyz", "", nil, nil)
		if r.status != http.StatusOK {
			t.Errorf("§3 GET /readyz of a ready gateway: %s", r)
		}
		var ready map[string]any
		if err := json.Unmarshal(r.body, &ready); err != nil {
			t.Fatalf("§3 /readyz body is not JSON: %s", r)
		}
		natsState, ok := ready["nats"].(map[string]any)
		if !ok || (natsState["state"] == nil && natsState["connected"] == nil) {
			t.Errorf("§3 /readyz JSON must carry the NATS state: %s", r.body)
		}
		conns, _ := json.Marshal(ready["connectors"])
		if !strings.Contains(string(conns), `"`+gwConnector+`"`) || !strings.Contains(string(conns), `"running"`) {
			t.Errorf("§3 /readyz JSON must carry each connector's state: %s", r.body)
		}
		if strings.Contains(string(conns), "tg-off") {
			t.Errorf("/readyz lists the disabled connector tg-off: %s", conns)
		}
		m := doHTTP(t, http.MethodGet, g.base+"/metrics", "", nil, nil)
		ct := m.header.Get("Content-Type")
		if m.status != http.StatusOK || !(strings.HasPrefix(ct, "text/plain") || strings.HasPrefix(ct, "application/openmetrics-text")) ||
			!regexp.MustCompile(`(?m)^# TYPE parley_\w+ \w+$`).Match(m.body) {
			t.Errorf("§3 GET /metrics must be a Prometheus exposition: %d %q\n%.500s", m.status, ct, m.body)
		}
	})

	t.Run("§4 streams and buckets", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		want := []struct {
			name      string
			retention jetstream.RetentionPolicy
			maxAge    time.Duration
		}{
			{"PARLEY_EVT_US_EAST", jetstream.LimitsPolicy, 7 * 24 * time.Hour},
			{"PARLEY_CMD_US_EAST", jetstream.WorkQueuePolicy, -1},
			{"PARLEY_DLQ_US_EAST", jetstream.LimitsPolicy, 30 * 24 * time.Hour},
		}
		for _, w := range want {
			s, err := g.js.Stream(ctx, w.name)
			if err != nil {
				t.Errorf("§4 stream %s (region %q upper-cased, - → _): %v", w.name, gwRegion, err)
				continue
			}
			cfg := s.CachedInfo().Config
			if cfg.Retention != w.retention {
				t.Errorf("§4 %s retention %v, want %v", w.name, cfg.Retention, w.retention)
			}
			if w.maxAge >= 0 && cfg.MaxAge != w.maxAge {
				t.Errorf("§4 %s max age %s, want %s", w.name, cfg.MaxAge, w.maxAge)
			}
			if cfg.Replicas != 1 {
				t.Errorf("§4 %s replicas %d, want nats.replicas = 1", w.name, cfg.Replicas)
			}
		}
		for _, purpose := range []string{"directory", "leases", "cursors"} {
			name := "parley_" + purpose + "_" + gwRegion
			if _, err := g.js.KeyValue(ctx, name); err != nil {
				alt := "parley_" + purpose + "_" + strings.ReplaceAll(gwRegion, "-", "_")
				_, altErr := g.js.KeyValue(ctx, alt)
				t.Errorf("§4 \"Key-value buckets and the object store are named parley_<purpose>_<region>\": no bucket %q for region %q (%v); %q exists: %v",
					name, gwRegion, err, alt, altErr == nil)
			}
		}
		name := "parley_media_" + gwRegion
		if _, err := g.js.ObjectStore(ctx, name); err != nil {
			alt := "parley_media_" + strings.ReplaceAll(gwRegion, "-", "_")
			_, altErr := g.js.ObjectStore(ctx, alt)
			t.Errorf("§4 object store parley_<purpose>_<region>: no object store %q (%v); %q exists: %v", name, err, alt, altErr == nil)
		}
	})

	t.Run("§3 webhooks", func(t *testing.T) {
		t.Run("200 only after the event is stored", func(t *testing.T) {
			text := "stored-before-200"
			r := g.webhook(t, gwSecret, updateJSON(g.updateID.Add(1), 7001, 1, time.Now().Unix(), text))
			if r.status != http.StatusOK {
				t.Fatalf("§3 a valid webhook: %s, want 200", r)
			}
			// Read the stream right after the 200: the event must be there.
			found := scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return m.text() == text })
			if len(found) != 1 {
				t.Fatalf("§3 \"200 only after every event in the request is stored\": right after the 200 the stream holds %d events with the text, want 1", len(found))
			}
		})
		t.Run("a redelivery yields no second event and the same id", func(t *testing.T) {
			text := "redelivered-update"
			body := updateJSON(g.updateID.Add(1), 7002, 1, time.Now().Unix(), text)
			for i := range 3 {
				if r := g.webhook(t, gwSecret, body); r.status != http.StatusOK {
					t.Fatalf("delivery %d: %s", i+1, r)
				}
			}
			time.Sleep(300 * time.Millisecond)
			found := scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return m.text() == text })
			if len(found) != 1 {
				t.Errorf("§5/§6 \"a redelivery within dedupe_window is dropped by Nats-Msg-Id\": 3 deliveries of one update stored %d events", len(found))
			}
		})
		t.Run("200 for a deliberately ignored update (our own bot's message), nothing stored", func(t *testing.T) {
			text := "said by the bot itself"
			u := map[string]any{"update_id": g.updateID.Add(1), "message": map[string]any{
				"message_id": 1, "date": time.Now().Unix(), "text": text,
				"chat": map[string]any{"id": -1001234567890, "type": "supergroup", "title": "Shop"},
				"from": map[string]any{"id": 5151, "is_bot": true, "first_name": "Parley Sim", "username": "parley_sim_bot"},
			}}
			body, _ := json.Marshal(u)
			if r := g.webhook(t, gwSecret, body); r.status != http.StatusOK {
				t.Errorf("§3 200 for an update that is deliberately ignored (our own bot's message): %s", r)
			}
			if n := len(scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return m.text() == text })); n != 0 {
				t.Errorf("our own bot's message was stored as %d events", n)
			}
		})
		t.Run("401 forged or missing secret, nothing stored", func(t *testing.T) {
			for i, secret := range []string{"forged-secret", ""} {
				text := fmt.Sprintf("forged-%d", i)
				r := g.webhook(t, secret, updateJSON(g.updateID.Add(1), 7003, 10+i, time.Now().Unix(), text))
				if r.status != http.StatusUnauthorized {
					t.Errorf("§3 401 bad signature or secret: secret %q answered %s", secret, r)
				}
				if n := len(scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return m.text() == text })); n != 0 {
					t.Errorf("§3 401 … (nothing stored): %d events stored", n)
				}
			}
		})
		t.Run("400 malformed body", func(t *testing.T) {
			for _, body := range []string{`{"update_id": 5, "message": `, `not json`} {
				if r := g.webhook(t, gwSecret, []byte(body)); r.status != http.StatusBadRequest {
					t.Errorf("§3 400 malformed body: %q answered %s", body, r)
				}
			}
		})
		t.Run("404 unknown or disabled connector", func(t *testing.T) {
			for _, id := range []string{"no-such-connector", "tg-off"} {
				r := doHTTP(t, http.MethodPost, g.base+"/webhooks/"+id, "", map[string]string{
					"X-Telegram-Bot-Api-Secret-Token": "off-secret", "Content-Type": "application/json",
				}, bytes.NewReader(updateJSON(g.updateID.Add(1), 7004, 1, time.Now().Unix(), "x")))
				if r.status != http.StatusNotFound {
					t.Errorf("§3 404 unknown or disabled connector: /webhooks/%s answered %s", id, r)
				}
			}
		})
		t.Run("413 body over max_body_bytes", func(t *testing.T) {
			big := updateJSON(g.updateID.Add(1), 7005, 1, time.Now().Unix(), strings.Repeat("x", gwMaxBody+100))
			if r := g.webhook(t, gwSecret, big); r.status != http.StatusRequestEntityTooLarge {
				t.Errorf("§3 413 body over max_body_bytes (with Content-Length): %d", r.status)
			}
			// The same without Content-Length (chunked).
			req, _ := http.NewRequest(http.MethodPost, g.base+"/webhooks/"+gwConnector, io.MultiReader(bytes.NewReader(big)))
			req.Header.Set("X-Telegram-Bot-Api-Secret-Token", gwSecret)
			resp, err := httpc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("§3 413 body over max_body_bytes (chunked): %d", resp.StatusCode)
			}
			if n := len(scanStream(t, g.js, "PARLEY_EVT_US_EAST", func(m *evMsg) bool { return strings.HasPrefix(m.text(), "xxxxxxxx") })); n != 0 {
				t.Errorf("an over-limit body was stored (%d events)", n)
			}
		})
		t.Run("GET is no verification handshake for Telegram", func(t *testing.T) {
			r := doHTTP(t, http.MethodGet, g.base+"/webhooks/"+gwConnector+"?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1158201444", "", nil, nil)
			if r.status == http.StatusOK && strings.Contains(string(r.body), "1158201444") {
				t.Errorf("§3 GET /webhooks/{id} echoed a Meta challenge for a Telegram connector: %s", r)
			}
			t.Logf("GET /webhooks/%s with a Meta handshake answers %s", gwConnector, r)
			if r := doHTTP(t, http.MethodGet, g.base+"/webhooks/no-such?hub.mode=subscribe&hub.challenge=1", "", nil, nil); r.status != http.StatusNotFound {
				t.Errorf("§3 GET /webhooks/<unknown>: %s, want 404", r)
			}
		})
	})

	t.Run("§5 events", func(t *testing.T) {
		const chat = 2012
		u := g.sim.UserText(chat, user(chat), "event shape")
		g.sim.Enqueue(u)
		m := g.events.waitFor(t, 20*time.Second, "message.received", func(m *evMsg) bool { return m.text() == "event shape" })
		for _, p := range checkEvent(m, gwRegion, "telegram", gwConnector) {
			t.Error(p)
		}
		wantTime := time.Unix(int64(u.Message.Date), 0).UTC()
		if tm, err := time.Parse(time.RFC3339, m.E.Time); err != nil || !tm.Equal(wantTime) {
			t.Errorf("§5 time is \"when it happened on the platform\": %q, want %s", m.E.Time, wantTime.Format(time.RFC3339))
		}
		d := m.E.Data
		if d.Conversation == nil || d.Conversation.PlatformID != strconv.Itoa(chat) || d.Conversation.Kind != "direct" {
			t.Errorf("§5 data.conversation: %s", m.Raw)
		}
		if d.Sender == nil || d.Sender.PlatformID != strconv.Itoa(chat) || d.Sender.Username != "ana_contract" ||
			d.Sender.Name != "Ana Contract" || d.Sender.Language != "es" {
			t.Errorf("§5 data.sender: %s", m.Raw)
		}
		if d.Message.PlatformID != strconv.Itoa(u.Message.ID) {
			t.Errorf("§5 data.message.platform_id %q, want %d", d.Message.PlatformID, u.Message.ID)
		}
		conv := m.E.Subject

		// An edit, a reaction and a button press fill their parts and kinds.
		msgID := u.Message.ID
		g.sim.Enqueue(g.sim.EditedText(chat, user(chat), msgID, "event shape (edited)"))
		g.sim.Enqueue(g.sim.Reaction(chat, user(chat), msgID, "👍"))
		g.sim.Enqueue(g.sim.CallbackQuery(chat, user(chat), msgID, "choice-yes"))
		for _, typ := range []string{"parley.message.edited", "parley.reaction.added", "parley.postback.received"} {
			e := g.events.waitFor(t, 20*time.Second, typ, func(m *evMsg) bool { return m.E.Type == typ && m.E.Subject == conv })
			for _, p := range checkEvent(e, gwRegion, "telegram", gwConnector) {
				t.Errorf("%s: %s", typ, p)
			}
		}
		if e := g.events.filter(func(m *evMsg) bool { return m.E.Type == "parley.reaction.added" && m.E.Subject == conv }); len(e) == 1 {
			if r := e[0].E.Data.Reaction; r == nil || r.Emoji != "👍" || r.TargetPlatformID != strconv.Itoa(msgID) {
				t.Errorf("§5 reaction part (target_platform_id, emoji): %s", e[0].Raw)
			}
		}
	})

	t.Run("§3 GET /v1/conversations/{id}", func(t *testing.T) {
		const chat = 2007
		m := g.inbound(t, chat, "directory entry")
		conv := m.E.Subject
		r := g.api(t, http.MethodGet, "/v1/conversations/"+conv, gwAPIToken, nil)
		if r.status != http.StatusOK {
			t.Fatalf("§3 GET /v1/conversations/%s: %s", conv, r)
		}
		var e map[string]any
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatal(err)
		}
		if e["platform"] != "telegram" || e["connector"] != gwConnector || e["region"] != gwRegion {
			t.Errorf("§3 the directory entry has platform, connector, region: %s", r.body)
		}
		if e["platform_id"] != strconv.Itoa(chat) {
			t.Errorf("§3 the directory entry has the platform address: %s", r.body)
		}
		last, _ := e["last_inbound_at"].(string)
		if tm, err := time.Parse(time.RFC3339, last); err != nil || time.Since(tm) > time.Minute {
			t.Errorf("§3 the directory entry has the last inbound time: %s", r.body)
		}
		if _, ok := e["window_expires_at"]; !ok {
			t.Errorf("§3 the directory entry has window_expires_at: %s", r.body)
		}
		if r := g.api(t, http.MethodGet, "/v1/conversations/"+conv, "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("§3 /v1/* needs bearer auth: %s", r)
		}
		if r := g.api(t, http.MethodGet, "/v1/conversations/c_AAAAAAAAAAAAAAAAAAAAAAAA", gwAPIToken, nil); r.status != http.StatusNotFound {
			t.Errorf("GET of an unknown conversation: %s, want 404", r)
		}
	})

	t.Run("§3 POST /v1/replies", func(t *testing.T) {
		const chat = 2007
		conv := g.inbound(t, chat, "replies api").E.Subject
		body := map[string]any{"id": "api-1", "conversation_id": conv, "text": "hello **api**"}
		r := g.api(t, http.MethodPost, "/v1/replies", gwAPIToken, body)
		g.submitted("api-1", false)
		var got map[string]any
		_ = json.Unmarshal(r.body, &got)
		if r.status != http.StatusAccepted || got["id"] != "api-1" || got["conversation_id"] != conv || got["duplicate"] == true {
			t.Errorf("§3 POST /v1/replies: 202 {\"id\",\"conversation_id\"} once stored; got %s", r)
		}
		r = g.api(t, http.MethodPost, "/v1/replies", gwAPIToken, body)
		got = nil
		_ = json.Unmarshal(r.body, &got)
		if r.status != http.StatusAccepted || got["duplicate"] != true || got["id"] != "api-1" {
			t.Errorf("§3 the same id again is 202 with \"duplicate\": true; got %s", r)
		}
		st := g.status(t, "api-1", 20*time.Second)
		if st.E.Type != "parley.reply.sent" {
			t.Fatalf("reply api-1: %s", st)
		}
		time.Sleep(1500 * time.Millisecond)
		n := 0
		for _, s := range g.sim.SentTo(chat) {
			if strings.Contains(s.Text, "api") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("§6 a reply submitted twice with one id must be sent once: sent %d times", n)
		}

		for _, tc := range []struct {
			name   string
			token  string
			body   any
			status int
		}{
			{"invalid id", gwAPIToken, map[string]any{"id": "bad id!", "conversation_id": conv, "text": "x"}, http.StatusBadRequest},
			{"missing conversation_id", gwAPIToken, map[string]any{"id": "api-bad-2", "text": "x"}, http.StatusBadRequest},
			{"malformed JSON", gwAPIToken, `{"id":`, http.StatusBadRequest},
			{"no token", "", body, http.StatusUnauthorized},
			{"wrong token", "not-the-token", body, http.StatusUnauthorized},
			{"unknown conversation", gwAPIToken, map[string]any{"id": "api-404", "conversation_id": "c_AAAAAAAAAAAAAAAAAAAAAAAA", "text": "x"}, http.StatusNotFound},
		} {
			r := g.api(t, http.MethodPost, "/v1/replies", tc.token, tc.body)
			if r.status != tc.status {
				t.Errorf("§3 POST /v1/replies, %s: %s, want %d", tc.name, r, tc.status)
			}
			checkErrorShape(t, "POST /v1/replies, "+tc.name, r)
		}
	})

	t.Run("§3 GET /v1/media/{id}", func(t *testing.T) {
		const chat = 2008
		data := bytes.Repeat([]byte("parley-media-bytes-"), 200)
		g.sim.Enqueue(g.sim.Photo(chat, user(chat), "a label", data))
		m := g.events.waitFor(t, 20*time.Second, "photo message", func(m *evMsg) bool {
			return m.E.Type == "parley.message.received" && m.E.Data.Message != nil && len(m.E.Data.Message.Attachments) == 1 &&
				m.E.Data.Message.Attachments[0].Kind == "image"
		})
		a := m.E.Data.Message.Attachments[0]
		if a.Status != "pending" {
			t.Errorf("§5 publishing a message never waits on media: attachment status %q, want pending", a.Status)
		}
		st := g.events.waitFor(t, 20*time.Second, "media.stored", func(e *evMsg) bool {
			return strings.HasPrefix(e.E.Type, "parley.media.") && e.E.Data.Media != nil && e.E.Data.Media.ID == a.MediaID
		})
		if st.E.Type != "parley.media.stored" {
			t.Fatalf("media: %s", st)
		}
		for _, p := range checkEvent(st, gwRegion, "telegram", gwConnector) {
			t.Error(p)
		}
		sum := sha256.Sum256(data)
		if md := st.E.Data.Media; md.Size != int64(len(data)) || md.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("§5 media.stored size/sha256: %s", st.Raw)
		}
		r := g.api(t, http.MethodGet, "/v1/media/"+a.MediaID, gwAPIToken, nil)
		if r.status != http.StatusOK || !bytes.Equal(r.body, data) {
			t.Errorf("§3 GET /v1/media/{id} returns the stored bytes: %d, %d bytes (want %d)", r.status, len(r.body), len(data))
		}
		if ct := r.header.Get("Content-Type"); ct == "" || ct != st.E.Data.Media.MimeType {
			t.Errorf("§3 GET /v1/media/{id} with its content type: %q, media.stored says %q", ct, st.E.Data.Media.MimeType)
		}
		if r := g.api(t, http.MethodGet, "/v1/media/"+a.MediaID, "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("§3 /v1/media needs bearer auth: %d", r.status)
		}
		if r := g.api(t, http.MethodGet, "/v1/media/m_AAAAAAAAAAAAAAAAAAAAAAAA", gwAPIToken, nil); r.status != http.StatusNotFound {
			t.Errorf("GET of unknown media: %d, want 404", r.status)
		}

		// A file Telegram will not let a bot download (over 20 MB).
		u := g.sim.Document(chat, user(chat), "huge.bin", "application/octet-stream", []byte("small stand-in"))
		g.sim.AddFile(u.Message.Document.FileID, []byte("small stand-in"), telegramsim.MaxDownloadSize+1)
		g.sim.Enqueue(u)
		dm := g.events.waitFor(t, 20*time.Second, "document message", func(m *evMsg) bool {
			return m.E.Type == "parley.message.received" && m.E.Data.Message != nil && len(m.E.Data.Message.Attachments) == 1 &&
				m.E.Data.Message.Attachments[0].Kind == "file"
		})
		mid := dm.E.Data.Message.Attachments[0].MediaID
		fe := g.events.waitFor(t, 20*time.Second, "media.failed of an undownloadable file", func(e *evMsg) bool {
			return strings.HasPrefix(e.E.Type, "parley.media.") && e.E.Data.Media != nil && e.E.Data.Media.ID == mid
		})
		if fe.E.Type != "parley.media.failed" {
			t.Errorf("§5 an attachment whose bytes cannot be fetched is announced by parley.media.failed: got %s", fe)
		}
	})

	// Deliveries run in parallel, each on its own chat.
	t.Run("delivery", func(t *testing.T) {
		par := newPar(t)
		defer par.wait()
		par.run("§6 ordered per conversation under the 1 msg/s limit, others in parallel", func(t *testing.T) {
			const chat, other = 2001, 2010
			conv := g.inbound(t, chat, "order please").E.Subject
			otherConv := g.inbound(t, other, "me too").E.Subject
			const n = 10
			for i := 1; i <= n; i++ {
				g.reply(t, map[string]any{"id": fmt.Sprintf("ord-%02d", i), "conversation_id": conv, "text": fmt.Sprintf("order %02d", i)})
			}
			start := time.Now()
			g.reply(t, map[string]any{"id": "par-1", "conversation_id": otherConv, "text": "parallel"})
			if st := g.status(t, "par-1", 20*time.Second); st.E.Type != "parley.reply.sent" {
				t.Errorf("par-1: %s", st)
			}
			pendingThen := n - len(g.sim.SentTo(chat))
			if took := time.Since(start); took > 4*time.Second || pendingThen == 0 {
				t.Errorf("§6 \"other conversations proceed in parallel\": a reply to another chat took %s (%d of the first chat's still pending)", took, pendingThen)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			if _, err := g.sim.WaitSentTo(ctx, chat, n); err != nil {
				t.Fatalf("§6 ordering: %v", err)
			}
			for i := 1; i <= n; i++ {
				if st := g.status(t, fmt.Sprintf("ord-%02d", i), 10*time.Second); st.E.Type != "parley.reply.sent" {
					t.Errorf("ord-%02d: %s", i, st)
				}
			}
			time.Sleep(1500 * time.Millisecond)
			sent := g.sim.SentTo(chat)
			var texts []string
			for _, s := range sent {
				texts = append(texts, s.Text)
			}
			var want []string
			for i := 1; i <= n; i++ {
				want = append(want, fmt.Sprintf("order %02d", i))
			}
			if !slices.Equal(texts, want) {
				t.Errorf("§6 \"replies to one conversation are sent in the order their commands were stored\" (no loss, no duplicate):\n got %q\nwant %q", texts, want)
			}
		})

		par.run("§5 a long text is split, reply.sent has every platform id in order", func(t *testing.T) {
			const chat = 2002
			conv := g.inbound(t, chat, "tell me a lot").E.Subject
			text := strings.TrimSpace(strings.Repeat("First paragraph words. ", 150)) + "\n\n" + strings.TrimSpace(strings.Repeat("Second paragraph words. ", 100))
			g.reply(t, map[string]any{"id": "split-1", "conversation_id": conv, "text": text})
			st := g.status(t, "split-1", 30*time.Second)
			if st.E.Type != "parley.reply.sent" {
				t.Fatalf("split-1: %s", st)
			}
			sent := g.sim.SentTo(chat)
			var ids, joined []string
			for _, s := range sent {
				ids = append(ids, strconv.Itoa(s.MessageID))
				joined = append(joined, strings.Fields(s.Text)...)
			}
			if len(sent) != 2 {
				t.Errorf("a %d-character text over Telegram's 4096 limit should go out as 2 messages, went as %d", len(text), len(sent))
			}
			if !slices.Equal(st.E.Data.Reply.PlatformIDs, ids) {
				t.Errorf("§5 reply.sent must carry every platform message id, in order: %q, the platform has %q", st.E.Data.Reply.PlatformIDs, ids)
			}
			if !slices.Equal(joined, strings.Fields(text)) {
				t.Errorf("§5 the parts, in order, must make up the text")
			}
		})

		par.run("§6 a 429 retry_after is honoured", func(t *testing.T) {
			const chat = 2003
			conv := g.inbound(t, chat, "rate me").E.Subject
			g.sim.FailChat(chat, telegramsim.TooManyRequests(2), 1)
			g.injected429.Add(1)
			start := time.Now()
			g.reply(t, map[string]any{"id": "r429-1", "conversation_id": conv, "text": "after the flood"})
			st := g.status(t, "r429-1", 30*time.Second)
			if st.E.Type != "parley.reply.sent" {
				t.Fatalf("r429-1: %s", st)
			}
			sent := g.sim.SentTo(chat)
			if len(sent) != 1 {
				t.Fatalf("sent %d messages, want 1", len(sent))
			}
			if wait := sent[0].Time.Sub(start); wait < 2*time.Second-50*time.Millisecond || wait > 8*time.Second {
				t.Errorf("§6 \"a platform's retry-after is honoured\": retry_after 2s, sent %s after the command", wait.Round(time.Millisecond))
			}
			if st.E.Data.Reply.Attempts < 2 {
				t.Errorf("§5 reply.sent attempts %d after a 429, want ≥ 2", st.E.Data.Reply.Attempts)
			}
		})

		par.run("§6 transient failures are retried, the reply is sent once", func(t *testing.T) {
			const chat = 2009
			conv := g.inbound(t, chat, "flaky").E.Subject
			g.sim.FailChat(chat, telegramsim.InternalServerError(), 1)
			g.sim.FailChat(chat, telegramsim.BadGatewayHTML(), 1)
			g.reply(t, map[string]any{"id": "flaky-1", "conversation_id": conv, "text": "despite errors"})
			st := g.status(t, "flaky-1", 30*time.Second)
			if st.E.Type != "parley.reply.sent" || st.E.Data.Reply.Attempts < 3 {
				t.Errorf("§6 transient failures are retried: %s", st)
			}
			time.Sleep(time.Second)
			if n := len(g.sim.SentTo(chat)); n != 1 {
				t.Errorf("§6 sent %d times, want 1", n)
			}
		})

		par.run("§4 a reply command published on NATS is delivered", func(t *testing.T) {
			const chat = 2006
			conv := g.inbound(t, chat, "via nats").E.Subject
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			publish := func(conv, id string, body map[string]any) {
				data, _ := json.Marshal(body)
				msg := nats.NewMsg(fmt.Sprintf("parley.cmd.%s.telegram.%s.%s.send", gwRegion, gwConnector, conv))
				msg.Header.Set("Nats-Msg-Id", id)
				msg.Data = data
				if _, err := g.js.PublishMsg(ctx, msg); err != nil {
					t.Fatalf("§4 publishing a reply command to %s: %v", msg.Subject, err)
				}
				g.submitted(id, false)
			}
			publish(conv, "nats-1", map[string]any{"id": "nats-1", "conversation_id": conv, "text": "from nats"})
			st := g.status(t, "nats-1", 20*time.Second)
			if st.E.Type != "parley.reply.sent" {
				t.Fatalf("§4 nats-1: %s", st)
			}
			if want := fmt.Sprintf("parley.evt.%s.telegram.%s.%s.status", gwRegion, gwConnector, conv); st.Subject != want {
				t.Errorf("§4 status subject %q, want %q", st.Subject, want)
			}
			if sent := g.sim.SentTo(chat); len(sent) != 1 || sent[0].Text != "from nats" {
				t.Errorf("§4 the simulator got %d messages", len(sent))
			}

			// reply.failed codes for what only the outbox can judge.
			publish(conv, "nats-invalid", map[string]any{"id": "nats-invalid", "conversation_id": conv})
			if st := g.status(t, "nats-invalid", 20*time.Second); st.E.Type != "parley.reply.failed" || st.E.Data.Reply.Error == nil || st.E.Data.Reply.Error.Code != "invalid_reply" {
				t.Errorf("§5 a command with neither text nor attachment must end in reply.failed invalid_reply: %s", st)
			}
			unknown := "c_AAAAAAAAAAAAAAAAAAAAAAAB"
			publish(unknown, "nats-unknown", map[string]any{"id": "nats-unknown", "conversation_id": unknown, "text": "x"})
			if st := g.status(t, "nats-unknown", 20*time.Second); st.E.Type != "parley.reply.failed" || st.E.Data.Reply.Error == nil || st.E.Data.Reply.Error.Code != "unknown_conversation" {
				t.Errorf("§5 a command for an unknown conversation must end in reply.failed unknown_conversation: %s", st)
			}
			past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
			g.reply(t, map[string]any{"id": "expired-1", "conversation_id": conv, "text": "too late", "not_after": past})
			if st := g.status(t, "expired-1", 20*time.Second); st.E.Type != "parley.reply.failed" || st.E.Data.Reply.Error == nil || st.E.Data.Reply.Error.Code != "expired" {
				t.Errorf("§5 not_after in the past: give up with reply.failed code \"expired\": %s", st)
			}
		})

		par.run("§1 reply prints reply.sent and exits 0", func(t *testing.T) {
			const chat = 2005
			conv := g.inbound(t, chat, "cli please").E.Subject
			out, errOut, code := runCLI(t, bin, g.dir, env, 60*time.Second, "reply", "--conversation", conv, "--text", "hello from the cli", "--id", "cli-ok-1")
			g.submitted("cli-ok-1", false)
			if code != exitOK || !strings.Contains(out, "reply.sent") {
				t.Errorf("§1 `parley reply --conversation C --text T` publishes, waits and prints reply.sent (exit 0): exit %d\n%s%s", code, out, errOut)
			}
			if sent := g.sim.SentTo(chat); len(sent) != 1 || sent[0].Text != "hello from the cli" {
				t.Errorf("the simulator got %+v", sent)
			}
		})

		par.run("§1 tail prints events as they arrive", func(t *testing.T) {
			const chat, other = 2011, 2013
			conv := g.inbound(t, chat, "tail warm-up").E.Subject
			otherConv := g.inbound(t, other, "tail other warm-up").E.Subject
			tj := startProc(t, bin, g.dir, env, "tail", "--json", "--conversation", conv)
			tr := startProc(t, bin, g.dir, env, "tail", "--type", "message.received")
			var jsonLine string
			readable := func() bool { return strings.Contains(tr.stdout.String(), "message.received") }
			for i := 0; (jsonLine == "" || !readable()) && i < 30; i++ {
				g.sim.Enqueue(g.sim.UserText(other, user(other), fmt.Sprintf("not for tail %d", i)))
				g.sim.Enqueue(g.sim.UserText(chat, user(chat), fmt.Sprintf("tail me %d", i)))
				_ = waitCond(500*time.Millisecond, func() bool {
					for _, l := range strings.Split(tj.stdout.String(), "\n") {
						if strings.Contains(l, "tail me") {
							jsonLine = l
							return true
						}
					}
					return false
				})
				if !tj.running() || !tr.running() {
					t.Fatalf("tail exited\n%s\n%s", tj.output(), tr.output())
				}
			}
			if jsonLine == "" {
				t.Fatalf("§1 `parley tail --json` printed no line for new events within 15s\n%s", tj.output())
			}
			e := newEvMsg(0, "", nil, []byte(jsonLine))
			if e.Err != nil || e.E.SpecVersion != "1.0" || e.E.Type != "parley.message.received" || e.E.Subject != conv {
				t.Errorf("§1 tail --json prints the raw event: %q", jsonLine)
			}
			if strings.Contains(tj.stdout.String(), otherConv) || strings.Contains(tj.stdout.String(), "not for tail") {
				t.Errorf("§1 tail --conversation %s printed another conversation's events:\n%s", conv, tj.stdout.String())
			}
			if !readable() {
				t.Errorf("§1 `parley tail --type message.received` printed no readable line:\n%s", tr.output())
			}
			for _, p := range []*proc{tj, tr} {
				_ = p.cmd.Process.Signal(syscall.SIGINT)
				if code, ok := p.wait(10 * time.Second); !ok || code != exitOK {
					t.Errorf("tail on SIGINT: stopped=%v exit %d\n%s", ok, code, p.output())
				}
			}
		})

		par.run("§1 reply.failed, dlq list, purge, replay", func(t *testing.T) {
			const chat = 2004
			conv := g.inbound(t, chat, "I will block you").E.Subject
			g.sim.Block(chat)
			out, errOut, code := runCLI(t, bin, g.dir, env, 60*time.Second, "reply", "--conversation", conv, "--text", "blocked one", "--id", "dlq-cli-1")
			g.submitted("dlq-cli-1", true)
			if code == exitOK || !strings.Contains(out, "reply.failed") {
				t.Errorf("§1 `parley reply` must print reply.failed and exit non-zero on a failure: exit %d\n%s%s", code, out, errOut)
			}
			st := g.status(t, "dlq-cli-1", 20*time.Second)
			if st.E.Type != "parley.reply.failed" || st.E.Data.Reply.Error == nil || st.E.Data.Reply.Error.Code != "recipient_unavailable" {
				t.Errorf("§5 a reply to a user who blocked the bot: %s, want reply.failed recipient_unavailable", st)
			}
			g.reply(t, map[string]any{"id": "dlq-purge-1", "conversation_id": conv, "text": "blocked two"})
			if st := g.status(t, "dlq-purge-1", 20*time.Second); st.E.Type != "parley.reply.failed" {
				t.Fatalf("dlq-purge-1: %s", st)
			}

			// dlq list reads ./parley.yaml by default (cwd = the gateway's dir, no $PARLEY_CONFIG).
			noEnvCfg := cleanEnv("CT_API_TOKEN="+gwAPIToken, "CT_TG_TOKEN="+gwToken, "CT_TG_SECRET="+gwSecret)
			out, errOut, code = runCLI(t, bin, g.dir, noEnvCfg, 30*time.Second, "dlq", "list")
			if code != exitOK || !strings.Contains(out, "dlq-cli-1") || !strings.Contains(out, "dlq-purge-1") {
				t.Fatalf("§1 `parley dlq list` after permanent failures: exit %d\n%s%s", code, out, errOut)
			}
			// DLQ subject and failure headers.
			dl := scanStream(t, g.js, "PARLEY_DLQ_US_EAST", func(m *evMsg) bool { return true })
			wantSubj := fmt.Sprintf("parley.dlq.%s.telegram.%s.%s", gwRegion, gwConnector, conv)
			ours := 0
			for _, m := range dl {
				var body struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(m.Raw, &body)
				if body.ID != "dlq-cli-1" && body.ID != "dlq-purge-1" {
					continue
				}
				ours++
				if m.Subject != wantSubj {
					t.Errorf("§4 dead letter subject %q, want parley.dlq.<region>.<platform>.<connector>.<conv> = %q", m.Subject, wantSubj)
				}
				if len(m.Header) == 0 {
					t.Errorf("§4 dead-lettered reply commands carry failure headers: none on %s", m.Subject)
				}
			}
			if ours != 2 {
				t.Errorf("the DLQ holds %d of the 2 dead-lettered replies", ours)
			}

			out, errOut, code = runCLI(t, bin, g.dir, env, 30*time.Second, "dlq", "purge", "dlq-purge-1")
			if code != exitOK {
				t.Errorf("§1 `parley dlq purge ID`: exit %d\n%s%s", code, out, errOut)
			}
			out, _, _ = runCLI(t, bin, g.dir, env, 30*time.Second, "dlq", "list")
			if strings.Contains(out, "dlq-purge-1") || !strings.Contains(out, "dlq-cli-1") {
				t.Errorf("§1 after `dlq purge dlq-purge-1`, dlq list shows:\n%s", out)
			}

			// The user unblocks the bot: Telegram sends my_chat_member
			// (kicked → member), which the simulator's Unblock does not.
			g.sim.Unblock(chat)
			bot := map[string]any{"id": 5151, "is_bot": true, "first_name": "Parley Sim", "username": "parley_sim_bot"}
			from := map[string]any{"id": chat, "is_bot": false, "first_name": "Ana"}
			mcm, _ := json.Marshal(map[string]any{"my_chat_member": map[string]any{
				"chat": map[string]any{"id": chat, "type": "private", "first_name": "Ana"}, "from": from, "date": time.Now().Unix(),
				"old_chat_member": map[string]any{"status": "kicked", "user": bot, "until_date": 0},
				"new_chat_member": map[string]any{"status": "member", "user": bot},
			}})
			if _, err := g.sim.EnqueueJSON(mcm); err != nil {
				t.Fatal(err)
			}
			if err := waitCond(15*time.Second, func() bool {
				r := g.api(t, http.MethodGet, "/v1/conversations/"+conv, gwAPIToken, nil)
				var e map[string]any
				_ = json.Unmarshal(r.body, &e)
				return e["reachable"] == true
			}); err != nil {
				t.Fatalf("the conversation is not reachable again after my_chat_member (member): %v", err)
			}
			out, errOut, code = runCLI(t, bin, g.dir, env, 30*time.Second, "dlq", "replay", "dlq-cli-1")
			if code != exitOK {
				t.Fatalf("§1 `parley dlq replay ID`: exit %d\n%s%s", code, out, errOut)
			}
			re := g.events.waitFor(t, 30*time.Second, "a second status of the replayed dlq-cli-1", func(m *evMsg) bool {
				return strings.HasPrefix(m.E.Type, "parley.reply.") && m.replyID() == "dlq-cli-1" && m.Seq > st.Seq
			})
			if re.E.Type != "parley.reply.sent" {
				t.Errorf("§1 \"dlq replay\" re-queues a dead-lettered reply: after unblocking the chat and `parley dlq replay dlq-cli-1` (exit 0: %q), the replayed reply ends in %s: %s",
					strings.TrimSpace(out), re.E.Type, re.Raw)
			}
			time.Sleep(time.Second)
			var texts []string
			for _, s := range g.sim.SentTo(chat) {
				texts = append(texts, s.Text)
			}
			if !slices.Equal(texts, []string{"blocked one"}) {
				t.Errorf("§1 dlq replay re-queues: after the replay the chat got %q, want [\"blocked one\"]", texts)
			}
			out, _, _ = runCLI(t, bin, g.dir, env, 30*time.Second, "dlq", "list")
			if strings.Contains(out, "dlq-cli-1") {
				t.Logf("dlq list still shows the replayed reply:\n%s", out)
			}
		})
	})

	t.Run("§6 a burst to 60 chats respects the per-bot limit, every reply sent once", func(t *testing.T) {
		const first, n = 3000, 60
		for i := range n {
			chat := int64(first + i)
			g.sim.Enqueue(g.sim.UserText(chat, user(chat), fmt.Sprintf("burst hello %d", i)))
		}
		convs := make([]string, n)
		for i := range n {
			text := fmt.Sprintf("burst hello %d", i)
			convs[i] = g.events.waitFor(t, 30*time.Second, text, func(m *evMsg) bool {
				return m.E.Type == "parley.message.received" && m.text() == text
			}).E.Subject
		}
		before := g.sim.Responses("sendMessage")[http.StatusTooManyRequests]
		started := time.Now()
		for i := range n {
			g.reply(t, map[string]any{"id": fmt.Sprintf("burst-%02d", i), "conversation_id": convs[i], "text": fmt.Sprintf("burst reply %d", i)})
		}
		for i := range n {
			if st := g.status(t, fmt.Sprintf("burst-%02d", i), 60*time.Second); st.E.Type != "parley.reply.sent" {
				t.Errorf("burst-%02d: %s", i, st)
			}
		}
		limited := g.sim.Responses("sendMessage")[http.StatusTooManyRequests] - before
		g.burst429.Store(int32(limited))
		if limited > 0 {
			t.Errorf("§6 \"per-platform … rate limits are respected\": %d replies to %d chats (Telegram: 30 messages/s per bot, enforced by the simulator over a sliding second) met %d answers 429 retry_after; all were delivered after %s",
				n, n, limited, time.Since(started).Round(time.Millisecond))
		}
		for i := range n {
			if sent := g.sim.SentTo(int64(first + i)); len(sent) != 1 {
				t.Errorf("§6 chat %d got %d messages, want 1", first+i, len(sent))
			}
		}
	})

	t.Run("§4 every message has Nats-Msg-Id and Content-Type", func(t *testing.T) {
		g.cmdMu.Lock()
		cmds := slices.Clone(g.cmdMsgs)
		g.cmdMu.Unlock()
		if len(cmds) == 0 {
			t.Fatal("no reply command seen on parley.cmd.>")
		}
		for _, m := range cmds {
			var body struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(m.Data, &body)
			// A replay carries <id>:replay:<dlq seq> so the dedupe window
			// does not drop it (docs/contract-differences.md).
			if id := m.Header.Get("Nats-Msg-Id"); id != body.ID && !strings.HasPrefix(id, body.ID+":replay:") {
				t.Errorf("§4 reply command on %s: Nats-Msg-Id %q, want the reply command id %q", m.Subject, id, body.ID)
			}
			if ct := m.Header.Get("Content-Type"); ct != "application/cloudevents+json" && !strings.HasPrefix(body.ID, "nats-") {
				t.Errorf("§4 reply command %s on %s: Content-Type %q, want application/cloudevents+json", body.ID, m.Subject, ct)
			}
		}
		for _, m := range scanStream(t, g.js, "PARLEY_DLQ_US_EAST", func(*evMsg) bool { return true }) {
			var body struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(m.Raw, &body)
			id, ct := m.Header.Get("Nats-Msg-Id"), m.Header.Get("Content-Type")
			if id != body.ID || ct != "application/cloudevents+json" {
				t.Errorf("§4 \"Every message has Nats-Msg-Id (the event id, or the reply command id) and Content-Type: application/cloudevents+json\": dead letter of %s on %s has Nats-Msg-Id %q, Content-Type %q",
					body.ID, m.Subject, id, ct)
			}
		}
	})

	t.Run("§4 §5 every stored event is well-formed", func(t *testing.T) {
		all := g.events.all()
		if len(all) < 20 {
			t.Fatalf("only %d events", len(all))
		}
		seen := map[string]int{}
		kinds := map[string]bool{}
		for _, m := range all {
			for _, p := range checkEvent(m, gwRegion, "telegram", gwConnector) {
				t.Errorf("%s\n  event: %.300s", p, m)
			}
			seen[m.E.ID]++
			kinds[contractKind(m.E.Type)] = true
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("§5 event id %s stored %d times", id, n)
			}
		}
		for _, k := range []string{"message", "reaction", "status", "media", "connector"} {
			if !kinds[k] {
				t.Errorf("§4 no event of kind %q seen", k)
			}
		}
	})

	t.Run("§5 every reply command ends in exactly one status", func(t *testing.T) {
		g.replyMu.Lock()
		ids := copyMap(g.replyIDs)
		g.replyMu.Unlock()
		for id, replayed := range ids {
			var types []string
			for _, m := range g.events.filter(func(m *evMsg) bool { return strings.HasPrefix(m.E.Type, "parley.reply.") && m.replyID() == id }) {
				types = append(types, m.E.Type)
			}
			switch {
			case replayed && !slices.Equal(types, []string{"parley.reply.failed", "parley.reply.sent"}):
				t.Errorf("§5 reply %s (failed, then replayed): statuses %q", id, types)
			case !replayed && len(types) != 1:
				t.Errorf("§5 \"Every reply command ends in exactly one parley.reply.sent or parley.reply.failed\": %s has %q", id, types)
			}
		}
	})

	t.Run("§6 per-chat rate limits are respected (outside the burst)", func(t *testing.T) {
		got := g.sim.Responses("sendMessage")[http.StatusTooManyRequests] - int(g.burst429.Load())
		if want := int(g.injected429.Load()); got != want {
			t.Errorf("§6 \"per-platform and per-chat rate limits are respected\" (Telegram: 1 msg/s per chat, 30 msg/s per bot, as the simulator enforces): the simulator answered %d sends with 429, only %d of them injected by the test",
				got, want)
		}
	})

	t.Run("§1 serve on SIGINT: webhooks 503, in-flight work finishes, exit 0", func(t *testing.T) {
		const chat = 2014
		conv := g.inbound(t, chat, "slow one").E.Subject
		before := g.sim.Requests("sendMessage")
		g.sim.FailChat(chat, telegramsim.Delay(3*time.Second), 1)
		g.reply(t, map[string]any{"id": "inflight-1", "conversation_id": conv, "text": "in flight at shutdown"})
		if err := waitCond(10*time.Second, func() bool { return g.sim.Requests("sendMessage") > before }); err != nil {
			t.Fatalf("the slow send did not start: %v", err)
		}
		if err := g.proc.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		r := g.webhook(t, gwSecret, updateJSON(g.updateID.Add(1), 7010, 1, time.Now().Unix(), "while stopping"))
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("§1 serve \"stops cleanly on SIGINT/SIGTERM: stops taking webhooks (503)\": a webhook during shutdown answered %s", r)
		}
		code, ok := g.proc.wait(30 * time.Second)
		if !ok {
			t.Fatalf("§1 serve still runs 30s after SIGINT\n%s", g.proc.stderr.String())
		}
		if code != exitOK {
			t.Errorf("§1 serve exited %d after SIGINT, want 0\n%s", code, g.proc.stderr.String())
		}
		if sent := g.sim.SentTo(chat); len(sent) != 1 || sent[0].Text != "in flight at shutdown" {
			t.Errorf("§1 serve on SIGINT \"finishes in-flight work\": the simulator got %d messages", len(sent))
		}
		if st := g.events.filter(func(m *evMsg) bool { return m.replyID() == "inflight-1" }); len(st) != 1 || st[0].E.Type != "parley.reply.sent" {
			t.Errorf("§1/§6 the reply sent during shutdown must have its reply.sent stored before exit; statuses: %d", len(st))
		}
	})

	t.Run("§2 secrets never appear in logs or events", func(t *testing.T) {
		logs := g.proc.output()
		for _, secret := range []string{"CONTRACT-BOT-SECRET", gwSecret, gwAPIToken} {
			if strings.Contains(logs, secret) {
				i := strings.Index(logs, secret)
				t.Errorf("§2 \"Secrets never appear in logs\": %q appears in serve's output: …%s…", secret, logs[max(0, i-200):min(len(logs), i+50)])
			}
			for _, m := range g.events.all() {
				if bytes.Contains(m.Raw, []byte(secret)) {
					t.Errorf("§2 secret %q appears in event %s", secret, m.E.ID)
				}
			}
		}
	})
}

func copyMap(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ---------------------------------------------------------------------------
// NATS outage, restarts and a renamed connector

func contractOutage(t *testing.T, bin string) {
	natsURL, stopNATS, restartNATS := bustest.StartServer(t)
	const token = "6161:OUTAGE-SECRET"
	sim, err := telegramsim.NewServer(telegramsim.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	httpAddr := mustFreeAddr(t)
	base := "http://" + httpAddr
	cfg := func(connector string) string {
		return writeFile(t, filepath.Join(dir, connector+".yaml"), fmt.Sprintf(`data_dir: %q
nats: {url: %q}
http: {listen: %q}
api: {tokens: ["outage-token"]}
connectors:
  - id: %s
    platform: telegram
    region: eu
    telegram: {token: %q, mode: webhook, webhook_secret: outage-secret, api_url: %q}
  - id: tg-latam
    platform: telegram
    region: latam
    telegram: {token: "6262:LATAM", api_url: "http://127.0.0.1:1"}
`, filepath.Join(dir, "data"), natsURL, httpAddr, connector, token, sim.URL))
	}
	_, js := connectNATS(t, natsURL)
	var updateID atomic.Int64
	updateID.Store(100)
	postBody := func(t *testing.T, connector string, body []byte) httpResult {
		return doHTTP(t, http.MethodPost, base+"/webhooks/"+connector, "", map[string]string{
			"X-Telegram-Bot-Api-Secret-Token": "outage-secret", "Content-Type": "application/json",
		}, bytes.NewReader(body))
	}
	post := func(t *testing.T, connector string, chat int64, msgID int, text string) httpResult {
		return postBody(t, connector, updateJSON(updateID.Add(1), chat, msgID, time.Now().Unix(), text))
	}
	stored := func(t *testing.T, text string) []*evMsg {
		return scanStream(t, js, "PARLEY_EVT_EU", func(m *evMsg) bool { return m.text() == text })
	}
	const chat = 8001

	// An operator's older PARLEY_EVT_EU with a shorter max age and one event.
	{
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PARLEY_EVT_EU", Subjects: []string{"parley.evt.eu.>"}, MaxAge: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "parley.evt.eu.telegram.tg-old.c_OLDOLDOLDOLDOLDOLDOLDOLDO.message", []byte(`{"old":true}`)); err != nil {
			t.Fatal(err)
		}
		cancel()
	}

	p := startProc(t, bin, dir, nil, "serve", "--config", cfg("tg-one"), "--region", "eu")
	waitReadyProc(t, base, p)

	t.Run("§4 streams are created or updated at start, never deleted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "PARLEY_EVT_EU")
		if err != nil {
			t.Fatal(err)
		}
		info := s.CachedInfo()
		if info.Config.MaxAge != 7*24*time.Hour {
			t.Errorf("§4 an existing PARLEY_EVT_EU must be updated at start: max age %s, want 7 days", info.Config.MaxAge)
		}
		if info.State.Msgs < 1 {
			t.Errorf("§4 streams are never deleted: the existing PARLEY_EVT_EU lost its messages")
		}
		for _, name := range []string{"PARLEY_CMD_EU", "PARLEY_DLQ_EU"} {
			if _, err := js.Stream(ctx, name); err != nil {
				t.Errorf("§4 stream %s not created at start: %v", name, err)
			}
		}
	})

	t.Run("§1 serve --region serves only the given regions", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.Stream(ctx, "PARLEY_EVT_LATAM"); err == nil {
			t.Errorf("§1 serve --region eu created the streams of region latam")
		}
		r := doHTTP(t, http.MethodGet, base+"/readyz", "", nil, nil)
		if strings.Contains(string(r.body), "tg-latam") {
			t.Errorf("serve --region eu runs tg-latam: %s", r.body)
		}
	})

	var conv, sender string
	t.Run("§3 webhook stored on an external NATS", func(t *testing.T) {
		if r := post(t, "tg-one", chat, 1, "before the outage"); r.status != http.StatusOK {
			t.Fatalf("webhook: %s", r)
		}
		ev := stored(t, "before the outage")
		if len(ev) != 1 {
			t.Fatalf("stored %d events", len(ev))
		}
		conv, sender = ev[0].E.Subject, ev[0].E.Data.Sender.ID
		if ev[0].Subject != "parley.evt.eu.telegram.tg-one."+conv+".message" {
			t.Errorf("§4 subject %q", ev[0].Subject)
		}
	})
	if conv == "" {
		t.FailNow()
	}

	t.Run("§3 503 while NATS is down, 200 once it is back", func(t *testing.T) {
		stopNATS()
		var r httpResult
		if err := waitCond(20*time.Second, func() bool {
			r = doHTTP(t, http.MethodGet, base+"/readyz", "", nil, nil)
			return r.status == http.StatusServiceUnavailable
		}); err != nil {
			t.Errorf("§3 /readyz must answer 503 when NATS is not reachable; still %s", r)
		} else {
			var body map[string]any
			if json.Unmarshal(r.body, &body) != nil || body["nats"] == nil {
				t.Errorf("§3 /readyz 503 JSON must carry the NATS state: %s", r.body)
			}
		}
		if r := doHTTP(t, http.MethodGet, base+"/healthz", "", nil, nil); r.status != http.StatusOK {
			t.Errorf("§3 /healthz is 200 while the process runs, even without NATS: %s", r)
		}
		start := time.Now()
		refused := updateJSON(updateID.Add(1), chat, 2, time.Now().Unix(), "during the outage")
		r = postBody(t, "tg-one", refused)
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("§3 webhook while NATS is down: %s, want 503 (not durable right now)", r)
		}
		t.Logf("webhook during the outage answered %d after %s", r.status, time.Since(start).Round(time.Millisecond))
		rr := doHTTP(t, http.MethodPost, base+"/v1/replies", "outage-token", map[string]string{"Content-Type": "application/json"},
			strings.NewReader(fmt.Sprintf(`{"id":"outage-1","conversation_id":%q,"text":"x"}`, conv)))
		if rr.status != http.StatusServiceUnavailable {
			t.Errorf("§3 POST /v1/replies while NATS is down: %s, want 503", rr)
		}
		checkErrorShape(t, "POST /v1/replies while NATS is down", rr)

		restartNATS()
		back := time.Now()
		isReady := func() bool {
			r = doHTTP(t, http.MethodGet, base+"/readyz", "", nil, nil)
			return r.status == http.StatusOK
		}
		if err := waitCond(15*time.Second, isReady); err != nil {
			t.Errorf("§3 \"GET /readyz: 200 when NATS is reachable and every enabled connector is running\": NATS is back (the gateway logged \"nats reconnected\") but /readyz still answers %s 15s later", r)
		}
		// The platform retries the refused update.
		if r := postBody(t, "tg-one", refused); r.status != http.StatusOK {
			t.Errorf("the retried webhook after the outage: %s", r)
		}
		if n := len(stored(t, "during the outage")); n != 1 {
			t.Errorf("§6 the update refused with 503 and retried is stored %d times, want 1", n)
		}
		if err := waitCond(10*time.Second, isReady); err != nil {
			t.Fatalf("/readyz not 200 after NATS came back and a webhook was stored: %s\n%s", r, p.output())
		}
		t.Logf("/readyz 200 again %s after NATS came back (once the retried webhook was stored)", time.Since(back).Round(time.Millisecond))
	})

	// A reply that keeps failing transiently when the gateway stops.
	sim.FailChat(chat, telegramsim.InternalServerError(), 1000)
	if r := doHTTP(t, http.MethodPost, base+"/v1/replies", "outage-token", map[string]string{"Content-Type": "application/json"},
		strings.NewReader(fmt.Sprintf(`{"id":"durable-1","conversation_id":%q,"text":"survives a restart"}`, conv))); r.status != http.StatusAccepted {
		t.Fatalf("POST /v1/replies: %s", r)
	}
	if err := waitCond(15*time.Second, func() bool { return sim.Requests("sendMessage") >= 2 }); err != nil {
		t.Fatalf("the failing reply was not tried twice: %v", err)
	}

	t.Run("§1 SIGTERM exits 0", func(t *testing.T) {
		stopWith(t, p, syscall.SIGTERM, "serve on an external NATS")
	})
	sim.ClearFailures()

	t.Run("§5 ids are stable across a restart and a connector rename", func(t *testing.T) {
		check := func(t *testing.T, connector string, msgID int, text, what string, during func(t *testing.T)) {
			q := startProc(t, bin, dir, nil, "serve", "--config", cfg(connector), "--region", "eu")
			waitReadyProc(t, base, q)
			if during != nil {
				during(t)
			}
			if r := post(t, connector, chat, msgID, text); r.status != http.StatusOK {
				t.Fatalf("webhook: %s", r)
			}
			ev := stored(t, text)
			if len(ev) != 1 {
				t.Fatalf("stored %d events", len(ev))
			}
			e := ev[0].E
			if e.Subject != conv || e.Data.Sender == nil || e.Data.Sender.ID != sender {
				t.Errorf("§5 conversation and sender ids are \"the same on every instance and after restarts\" and \"renaming a connector keeps them\": %s gives %s/%v, before %s/%s",
					what, e.Subject, e.Data.Sender, conv, sender)
			}
			if want := "parley:eu:telegram:" + connector; e.Source != want {
				t.Errorf("§5 source %q, want %q", e.Source, want)
			}
			r := doHTTP(t, http.MethodGet, base+"/v1/conversations/"+conv, "outage-token", nil, nil)
			if r.status != http.StatusOK {
				t.Errorf("GET /v1/conversations after %s: %s", what, r)
			}
			if connector == "tg-two" {
				stopWith(t, q, syscall.SIGINT, "the renamed gateway")
			} else {
				stopWith(t, q, syscall.SIGTERM, "the restarted gateway")
			}
		}
		check(t, "tg-one", 3, "after a restart", "a restart", func(t *testing.T) {
			// §6 transient failures are retried durably: a restart resumes them.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := sim.WaitSentTo(ctx, chat, 1); err != nil {
				t.Errorf("§6 \"transient failures are retried … durably (a restart resumes them)\": %v", err)
				return
			}
			time.Sleep(time.Second)
			if sent := sim.SentTo(chat); len(sent) != 1 || sent[0].Text != "survives a restart" {
				t.Errorf("§6 the retried reply after a restart: %d messages sent", len(sent))
			}
			st := scanStream(t, js, "PARLEY_EVT_EU", func(m *evMsg) bool { return m.replyID() == "durable-1" })
			if len(st) != 1 || st[0].E.Type != "parley.reply.sent" {
				t.Errorf("§5 durable-1 must end in exactly one reply.sent; has %d statuses", len(st))
			}
		})
		check(t, "tg-two", 4, "after a rename", "renaming the connector tg-one → tg-two", nil)
	})
}

// ---------------------------------------------------------------------------
// Several instances on one NATS: one Telegram poller, moved when it dies

func contractScale(t *testing.T, bin string) {
	natsURL, _, _ := bustest.StartServer(t)
	const token = "7171:SCALE-SECRET"
	sim, err := telegramsim.NewServer(telegramsim.Options{Token: token, PerChatInterval: telegramsim.Disabled})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	tokenFile := writeFile(t, filepath.Join(dir, "token"), token+"\n")
	_, js := connectNATS(t, natsURL)
	type instance struct {
		name string
		base string
		p    *proc
	}
	start := func(name string) *instance {
		addr := mustFreeAddr(t)
		cfg := writeFile(t, filepath.Join(dir, name+".yaml"), fmt.Sprintf(`data_dir: %q
nats: {url: %q}
http: {listen: %q}
api: {tokens: ["x"]}
connectors:
  - id: tg-poll
    platform: telegram
    region: ap
    telegram:
      token_file: %q
      mode: polling
      poll_timeout: 1s
      api_url: %q
`, filepath.Join(dir, "data-"+name), natsURL, addr, tokenFile, sim.URL))
		in := &instance{name: name, base: "http://" + addr, p: startProc(t, bin, dir, nil, "serve", "--config", cfg)}
		return in
	}
	a, b := start("a"), start("b")
	waitReadyProc(t, a.base, a.p)
	waitReadyProc(t, b.base, b.p)

	stored := func(text string) int {
		return len(scanStream(t, js, "PARLEY_EVT_AP", func(m *evMsg) bool { return m.text() == text }))
	}
	holds := func(in *instance) bool {
		r := doHTTP(t, http.MethodGet, in.base+"/readyz", "", nil, nil)
		var body struct {
			Connectors []struct {
				ID        string `json:"id"`
				LeaseHeld bool   `json:"lease_held"`
			} `json:"connectors"`
		}
		_ = json.Unmarshal(r.body, &body)
		for _, c := range body.Connectors {
			if c.ID == "tg-poll" && c.LeaseHeld {
				return true
			}
		}
		return false
	}

	from := models.User{ID: 9001, FirstName: "Scale"}
	for i := range 5 {
		sim.Enqueue(sim.UserText(9001, from, fmt.Sprintf("scale %d", i)))
	}
	if err := waitCond(20*time.Second, func() bool { return stored("scale 4") == 1 }); err != nil {
		t.Fatalf("polled updates not stored: %v\n%s\n%s", err, a.p.output(), b.p.output())
	}
	for i := range 5 {
		if n := stored(fmt.Sprintf("scale %d", i)); n != 1 {
			t.Errorf("§6 update %d stored %d times with two instances", i, n)
		}
	}
	if n := sim.Responses("getUpdates")[http.StatusConflict]; n != 0 {
		t.Errorf("§6 \"a Telegram poller run[s] on exactly one instance at a time\": the simulator answered %d getUpdates with 409 (two pollers)", n)
	}
	var holder, other *instance
	switch ha, hb := holds(a), holds(b); {
	case ha && !hb:
		holder, other = a, b
	case hb && !ha:
		holder, other = b, a
	default:
		t.Fatalf("§6 exactly one instance must hold the poller's lease: a=%v b=%v", ha, hb)
	}

	// The holder dies: the poller moves to the other instance.
	died := time.Now()
	_ = holder.p.cmd.Process.Signal(syscall.SIGKILL)
	holder.p.wait(10 * time.Second)
	sim.Enqueue(sim.UserText(9001, from, "after the failover"))
	if err := waitCond(45*time.Second, func() bool { return stored("after the failover") == 1 }); err != nil {
		t.Fatalf("§6 connectors that allow one live session \"move to another [instance] when it dies\": not within 45s\n%s", other.p.output())
	}
	t.Logf("the poller moved from %s to %s; the update arrived %s after the kill", holder.name, other.name, time.Since(died).Round(time.Millisecond))
	if !holds(other) {
		t.Errorf("the surviving instance does not report lease_held")
	}
	stopWith(t, other.p, syscall.SIGTERM, "the surviving instance")
}
