package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/config"
	"github.com/parley-gateway/parley/connectors/registry"
	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/internal/app"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/normalize"
	"github.com/parley-gateway/parley/outbox"
)

const (
	demoRegion   = "eu"
	demoStepWait = 20 * time.Second
)

// demoPlatform is one platform the demo drives: its simulator and the id
// of the connector pointed at it.
type demoPlatform struct {
	registry.Platform
	sim simkit.Demo
	id  string
}

func runDemo(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "demo", "demo [--keep] [--verbose]")
	keep := fs.Bool("keep", false, "leave the gateway running after the script, for `parley tail` and the HTTP API")
	verbose := fs.Bool("verbose", false, "show the gateway's logs")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	dir, err := os.MkdirTemp("", "parley-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = newLogger(env.stderr, config.Log{Level: "debug"})
	}
	simCtx, stopSims := context.WithCancel(ctx)
	defer stopSims()
	var platforms []*demoPlatform
	defer func() {
		for _, p := range platforms {
			p.sim.Close()
		}
	}()
	for _, p := range env.registry() {
		if p.Demo == nil {
			continue
		}
		sim, err := p.Demo(simCtx)
		if err != nil {
			return fmt.Errorf("starting the %s simulator: %w", p.Name, err)
		}
		platforms = append(platforms, &demoPlatform{Platform: p, sim: sim, id: p.Platform + "-demo"})
	}
	if len(platforms) == 0 {
		return errors.New("no platform of this binary has a simulator to run the demo against")
	}

	natsListen := ""
	if *keep {
		if natsListen, err = freeAddr(); err != nil {
			return err
		}
	}
	apiToken := randomHex(16)
	cfgYAML := demoConfig(dir, natsListen, apiToken, platforms)
	cfgPath := filepath.Join(dir, "parley.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath, app.LoadOptions(env.registry())...)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}

	names := make([]string, len(platforms))
	for i, p := range platforms {
		names[i] = p.Name
	}
	fmt.Fprintf(env.stdout, "Parley demo: embedded NATS in %s, simulators for %s\n", dir, strings.Join(names, ", "))
	start := time.Now()
	a, err := app.New(ctx, cfg, app.Options{
		Logger: logger, InstanceID: "demo", Platforms: env.registry(),
		Outbox: app.OutboxTuning{MaxAttempts: 5, InProcessRetry: 5 * time.Second, RetryBase: 500 * time.Millisecond, RetryMax: 5 * time.Second},
	})
	if err != nil {
		return err
	}
	base := "http://" + a.HTTPAddr()
	for _, p := range platforms {
		p.sim.Attach(base + "/webhooks/" + p.id)
	}
	appCtx, stopApp := context.WithCancel(ctx)
	appDone := make(chan error, 1)
	go func() { appDone <- a.Run(appCtx) }()
	defer func() {
		stopApp()
		<-appDone
	}()
	fmt.Fprintf(env.stdout, "gateway ready in %s; HTTP on %s\n", time.Since(start).Round(time.Millisecond), a.HTTPAddr())

	d := &demo{env: env, app: a, b: a.Bus(), apiToken: apiToken, base: base, events: newEventLog()}
	if err := d.follow(appCtx); err != nil {
		return err
	}
	for _, p := range platforms {
		if err := d.script(ctx, p); err != nil {
			fmt.Fprintf(env.stdout, "\nDEMO FAILED on %s: %v\n", p.Name, err)
			return err
		}
	}
	fmt.Fprintf(env.stdout, "\nEvery step held on %s. The whole demo took %s.\n", strings.Join(names, ", "), time.Since(start).Round(time.Millisecond))

	if *keep {
		fmt.Fprintf(env.stdout, "\nThe gateway keeps running (Ctrl-C to stop). Try:\n")
		fmt.Fprintf(env.stdout, "  go run ./cmd/parley tail --config %s --since 1h\n", cfgPath)
		fmt.Fprintf(env.stdout, "  go run ./cmd/parley dlq list --config %s\n", cfgPath)
		fmt.Fprintf(env.stdout, "  curl -H 'Authorization: Bearer %s' %s/v1/conversations/%s\n", apiToken, d.base, d.lastConv)
		fmt.Fprintf(env.stdout, "  curl %s/readyz\n", d.base)
		<-ctx.Done()
	}
	return nil
}

// demoConfig is the configuration of the demo: one connector per platform,
// its block the simulator's.
func demoConfig(dir, natsListen, apiToken string, platforms []*demoPlatform) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by parley demo.
data_dir: %q
log: {level: info, format: text}
nats:
  embedded: {listen: %q, sync: always}
http:
  listen: 127.0.0.1:0
api:
  tokens: [%q]
connectors:
`, filepath.Join(dir, "data"), natsListen, apiToken)
	for _, p := range platforms {
		fmt.Fprintf(&b, "  - id: %s\n    platform: %s\n    region: %s\n    %s:\n", p.id, p.Platform.Platform, demoRegion, p.Platform.Platform)
		for _, line := range strings.Split(strings.TrimRight(p.sim.Settings(), "\n"), "\n") {
			b.WriteString("      " + line + "\n")
		}
	}
	return b.String()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// eventLog collects every event of the demo region, as a helpdesk would.
type eventLog struct {
	mu      sync.Mutex
	events  []*normalize.Event
	arrived []time.Time
	changed chan struct{}
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) add(ev *normalize.Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.arrived = append(l.arrived, time.Now())
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// wait returns the first event (and when it arrived) that matches and
// arrived after since, or an error after demoStepWait.
func (l *eventLog) wait(ctx context.Context, what string, since time.Time, match func(*normalize.Event) bool) (*normalize.Event, time.Time, error) {
	deadline := time.NewTimer(demoStepWait)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for i, ev := range l.events {
			if !l.arrived[i].Before(since) && match(ev) {
				at := l.arrived[i]
				l.mu.Unlock()
				return ev, at, nil
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return nil, time.Time{}, fmt.Errorf("no %s within %s", what, demoStepWait)
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		}
	}
}

func (l *eventLog) count(match func(*normalize.Event) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events {
		if match(ev) {
			n++
		}
	}
	return n
}

type demo struct {
	env      *cliEnv
	app      *app.App
	b        *bus.Bus
	apiToken string
	base     string
	events   *eventLog
	step     int

	lastConv normalize.ConversationID
}

// follow consumes the region's event stream from the start, like a helpdesk.
func (d *demo) follow(ctx context.Context) error {
	cons, err := d.b.JS().OrderedConsumer(ctx, bus.StreamName("EVT", demoRegion), jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("following events: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if ev, err := normalize.Decode(m.Data()); err == nil {
			d.events.add(ev)
		}
	})
	if err != nil {
		return fmt.Errorf("following events: %w", err)
	}
	go func() { <-ctx.Done(); cc.Stop() }()
	return nil
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.env.stdout, format+"\n", args...)
}

func (d *demo) hop(what string, took time.Duration, detail string) {
	d.step++
	fmt.Fprintf(d.env.stdout, "  %2d. %-62s %9s  %s\n", d.step, what, took.Round(100*time.Microsecond), detail)
}

// of matches events of type t from connector, on conv when conv is set.
func of(connector string, t normalize.Type, conv normalize.ConversationID) func(*normalize.Event) bool {
	return func(ev *normalize.Event) bool {
		return ev.Data.Connector == connector && ev.Type == t && (conv == "" || ev.Subject == conv)
	}
}

func isStatus(replyID string) func(*normalize.Event) bool {
	return func(ev *normalize.Event) bool {
		return ev.Data.Reply != nil && ev.Data.Reply.ID == replyID
	}
}

// inbound makes a customer act at the simulator and waits for the event.
func (d *demo) inbound(ctx context.Context, p *demoPlatform, what string, t normalize.Type, act func() error) (*normalize.Event, error) {
	sent := time.Now()
	if err := act(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ev, at, err := d.events.wait(ctx, string(t), sent, of(p.id, t, ""))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	d.hop("customer → "+p.Name+" → Parley: "+what, at.Sub(sent), fmt.Sprintf("%s %s", strings.TrimPrefix(string(ev.Type), "parley."), Summary(ev)))
	return ev, nil
}

// reply posts a reply through the HTTP API and waits for its status.
func (d *demo) reply(ctx context.Context, p *demoPlatform, what string, r normalize.Reply, want normalize.Type) (*normalize.Event, error) {
	body, _ := json.Marshal(r)
	sent := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/replies", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+d.apiToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: posting the reply: %w", what, err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("%s: POST /v1/replies answered %d: %s", what, resp.StatusCode, respBody)
	}
	ev, at, err := d.events.wait(ctx, "status of "+r.ID, sent, isStatus(r.ID))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if ev.Type != want {
		return nil, fmt.Errorf("%s: got %s (%s), want %s", what, ev.Type, Summary(ev), want)
	}
	d.hop("helpdesk → Parley → "+p.Name+": "+what, at.Sub(sent), Summary(ev))
	return ev, nil
}

// script is the conversation every platform goes through.
func (d *demo) script(ctx context.Context, p *demoPlatform) error {
	sim := p.sim
	maria := simkit.Customer{Key: 1, Name: "María López", Username: "marialopez", Language: "es"}
	bob := simkit.Customer{Key: 2, Name: "Bob", Language: "en"}
	replyID := func(n int) string { return fmt.Sprintf("demo-%s-%d", p.Platform.Platform, n) }

	d.say("\n%s (connector %s), a conversation with María:", p.Name, p.id)
	var helloID string
	ev, err := d.inbound(ctx, p, "text", normalize.TypeMessageReceived, func() (err error) {
		helloID, err = sim.Text(ctx, maria, "Hola! Where is my order #8812?")
		return err
	})
	if err != nil {
		return err
	}
	conv := ev.Subject
	d.lastConv = conv

	// The first answer meets the platform's rate limit once.
	sim.FailNextSend(simkit.FailRateLimited)
	st, err := d.reply(ctx, p, "answer with buttons (429, retry-after 1s)", normalize.Reply{
		ID: replyID(1), ConversationID: conv,
		Text:    "Your order **#8812** ships _today_. Anything else?",
		Choices: []normalize.Choice{{ID: "all-good", Title: "All good, thanks"}, {ID: "change-address", Title: "Change address"}},
	}, normalize.TypeReplySent)
	if err != nil {
		return err
	}
	if st.Data.Reply.Attempts < 2 {
		return fmt.Errorf("reply 1 took %d attempts; the 429 was not retried", st.Data.Reply.Attempts)
	}
	sent := sim.Sent(maria)
	if len(sent) != 1 {
		return fmt.Errorf("the simulator holds %d messages to María, want 1", len(sent))
	}
	answer := sent[0]
	if !strings.Contains(answer.Text, "#8812") || !slices.Contains(answer.Choices, "change-address") {
		return fmt.Errorf("reply 1 reached %s as %q with buttons %v", p.Name, answer.Markup, answer.Choices)
	}

	ev, err = d.inbound(ctx, p, "photo", normalize.TypeMessageReceived, func() error {
		_, err := sim.Photo(ctx, maria, "the parcel label", demoPhoto())
		return err
	})
	if err != nil {
		return err
	}
	if ev.Data.Message == nil || len(ev.Data.Message.Attachments) != 1 {
		return fmt.Errorf("the photo event has no single attachment")
	}
	att := ev.Data.Message.Attachments[0]
	began := time.Now()
	stored, at, err := d.events.wait(ctx, "media.stored", began.Add(-time.Minute), func(e *normalize.Event) bool {
		return e.Type == normalize.TypeMediaStored && e.Data.Media.ID == att.MediaID
	})
	if err != nil {
		return fmt.Errorf("photo: %w", err)
	}
	got, err := d.get(ctx, "/v1/media/"+string(att.MediaID))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, demoPhoto()) {
		return fmt.Errorf("GET /v1/media/%s returned %d bytes, not the photo", att.MediaID, len(got))
	}
	d.hop("media job → object store → GET /v1/media", max(at.Sub(began), 0), Summary(stored))

	if _, err := d.inbound(ctx, p, "location", normalize.TypeMessageReceived, func() error {
		_, err := sim.Location(ctx, maria, 40.41678, -3.70379)
		return err
	}); err != nil {
		return err
	}
	if _, err := d.inbound(ctx, p, "edit", normalize.TypeMessageEdited, func() error {
		return sim.Edit(ctx, maria, helloID, "Hola! Where is my order #8812? (it was due Monday)")
	}); err != nil {
		return err
	}
	if _, err := d.inbound(ctx, p, "reaction", normalize.TypeReactionAdded, func() error {
		return sim.React(ctx, maria, answer.PlatformID, "👍")
	}); err != nil {
		return err
	}
	ev, err = d.inbound(ctx, p, "button press", normalize.TypePostbackReceived, func() error {
		return sim.Press(ctx, maria, answer.PlatformID, "all-good")
	})
	if err != nil {
		return err
	}
	if ev.Data.Message.Postback.ID != "all-good" {
		return fmt.Errorf("button press arrived as %q", ev.Data.Message.Postback.ID)
	}
	if sim.PressesAnswered() >= 0 {
		if err := waitFor(ctx, func() bool { return sim.PressesAnswered() == 1 }); err != nil {
			return fmt.Errorf("the button press was not followed up on the platform")
		}
	}

	// The second answer meets a platform outage once.
	sim.FailNextSend(simkit.FailUnavailable)
	st, err = d.reply(ctx, p, "answer (5xx once)", normalize.Reply{
		ID: replyID(2), ConversationID: conv, Text: "Great — have a nice day!", ReplyTo: answer.PlatformID,
	}, normalize.TypeReplySent)
	if err != nil {
		return err
	}
	if st.Data.Reply.Attempts < 2 {
		return fmt.Errorf("reply 2 took %d attempts; the 5xx was not retried", st.Data.Reply.Attempts)
	}

	d.say("\n%s, a conversation with Bob, who then blocks the business:", p.Name)
	ev, err = d.inbound(ctx, p, "text", normalize.TypeMessageReceived, func() error {
		_, err := sim.Text(ctx, bob, "hi")
		return err
	})
	if err != nil {
		return err
	}
	bobConv := ev.Subject
	sim.Block(bob)
	st, err = d.reply(ctx, p, "answer to a customer who blocked us", normalize.Reply{
		ID: replyID(3), ConversationID: bobConv, Text: "Hi Bob, how can we help?",
	}, normalize.TypeReplyFailed)
	if err != nil {
		return err
	}
	if st.Data.Reply.Error.Code != normalize.ErrRecipientUnavailable {
		return fmt.Errorf("reply 3 failed with %s, want recipient_unavailable", st.Data.Reply.Error.Code)
	}
	dead, err := outbox.ListDLQ(ctx, d.b, demoRegion)
	if err != nil {
		return err
	}
	var letter *outbox.DeadLetter
	for i := range dead {
		if dead[i].ReplyID == replyID(3) {
			letter = &dead[i]
		}
	}
	if letter == nil {
		return fmt.Errorf("the dead-letter queue does not hold %s", replyID(3))
	}
	d.hop("dead-letter queue", 0, fmt.Sprintf("seq %d: %s %s (%s)", letter.Seq, letter.ReplyID, letter.Code, letter.Message))

	// Exactly once: every reply has exactly one status, and the platform
	// holds exactly the messages Parley was asked to send.
	for n := 1; n <= 3; n++ {
		if c := d.events.count(isStatus(replyID(n))); c != 1 {
			return fmt.Errorf("reply %s has %d status events, want 1", replyID(n), c)
		}
	}
	if n := len(sim.Sent(maria)); n != 2 {
		return fmt.Errorf("%s holds %d messages to María, want 2 (no duplicates)", p.Name, n)
	}
	if n := d.events.count(of(p.id, normalize.TypeMessageReceived, "")); n != 4 {
		return fmt.Errorf("%d message.received events, want 4 (no duplicates)", n)
	}
	d.say("\nChecked on %s: 3 replies with one status each, 2 messages delivered to María (none twice), 1 dead letter.", p.Name)
	return nil
}

func (d *demo) get(ctx context.Context, path string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+d.apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s answered %d: %s", path, resp.StatusCode, b)
	}
	return b, err
}

func waitFor(ctx context.Context, cond func() bool) error {
	deadline := time.Now().Add(demoStepWait)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("condition not met in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// demoPhoto is a tiny valid PNG.
func demoPhoto() []byte {
	b, _ := hex.DecodeString("89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
		"1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e221bc330000000049454e44ae426082")
	return b
}
