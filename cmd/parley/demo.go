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
	"strings"
	"sync"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/config"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/internal/app"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/normalize"
	"github.com/parley-gateway/parley/outbox"
)

const (
	demoRegion    = "eu"
	demoConnector = "tg-demo"
	demoToken     = "7000001:PARLEY-DEMO-TOKEN"
	demoStepWait  = 20 * time.Second
)

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
	sim, err := telegramsim.NewServer(telegramsim.Options{Token: demoToken, BotUsername: "parley_demo_bot", BotName: "Parley Demo"})
	if err != nil {
		return fmt.Errorf("starting the telegram simulator: %w", err)
	}
	defer sim.Close()

	natsListen := ""
	if *keep {
		if natsListen, err = freeAddr(); err != nil {
			return err
		}
	}
	apiToken := randomHex(16)
	cfgYAML := demoConfig(dir, natsListen, apiToken, sim.URL)
	cfgPath := filepath.Join(dir, "parley.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath, config.WithSettingsCheck(app.SettingsCheck))
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}

	fmt.Fprintf(env.stdout, "Parley demo: embedded NATS in %s, Telegram simulator at %s\n", dir, sim.URL)
	start := time.Now()
	a, err := app.New(ctx, cfg, app.Options{
		Logger: logger, InstanceID: "demo",
		Outbox: app.OutboxTuning{MaxAttempts: 5, InProcessRetry: 5 * time.Second, RetryBase: 500 * time.Millisecond, RetryMax: 5 * time.Second},
	})
	if err != nil {
		return err
	}
	appCtx, stopApp := context.WithCancel(ctx)
	appDone := make(chan error, 1)
	go func() { appDone <- a.Run(appCtx) }()
	defer func() {
		stopApp()
		<-appDone
	}()
	fmt.Fprintf(env.stdout, "gateway ready in %s; HTTP on %s\n\n", time.Since(start).Round(time.Millisecond), a.HTTPAddr())

	d := &demo{
		env: env, sim: sim.Sim, app: a, b: a.Bus(), apiToken: apiToken,
		base: "http://" + a.HTTPAddr(), events: newEventLog(),
	}
	if err := d.follow(appCtx); err != nil {
		return err
	}
	if err := d.script(ctx); err != nil {
		fmt.Fprintf(env.stdout, "\nDEMO FAILED: %v\n", err)
		return err
	}
	fmt.Fprintf(env.stdout, "\nEvery step held. The whole demo took %s.\n", time.Since(start).Round(time.Millisecond))

	if *keep {
		fmt.Fprintf(env.stdout, "\nThe gateway keeps running (Ctrl-C to stop). Try:\n")
		fmt.Fprintf(env.stdout, "  go run ./cmd/parley tail --config %s --since 1h\n", cfgPath)
		fmt.Fprintf(env.stdout, "  go run ./cmd/parley dlq list --config %s\n", cfgPath)
		fmt.Fprintf(env.stdout, "  curl -H 'Authorization: Bearer %s' %s/v1/conversations/%s\n", apiToken, d.base, d.mariaConv)
		fmt.Fprintf(env.stdout, "  curl %s/readyz\n", d.base)
		<-ctx.Done()
	}
	return nil
}

func demoConfig(dir, natsListen, apiToken, simURL string) string {
	return fmt.Sprintf(`# Written by parley demo.
data_dir: %q
log: {level: info, format: text}
nats:
  embedded: {listen: %q, sync: always}
http:
  listen: 127.0.0.1:0
api:
  tokens: [%q]
connectors:
  - id: %s
    platform: telegram
    region: %s
    telegram:
      token: %q
      mode: polling
      api_url: %q
      poll_timeout: 1s
`, filepath.Join(dir, "data"), natsListen, apiToken, demoConnector, demoRegion, demoToken, simURL)
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
	sim      *telegramsim.Sim
	app      *app.App
	b        *bus.Bus
	apiToken string
	base     string
	events   *eventLog
	step     int

	mariaConv normalize.ConversationID
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

func isType(t normalize.Type, conv normalize.ConversationID) func(*normalize.Event) bool {
	return func(ev *normalize.Event) bool { return ev.Type == t && (conv == "" || ev.Subject == conv) }
}

func isStatus(replyID string) func(*normalize.Event) bool {
	return func(ev *normalize.Event) bool {
		return ev.Data.Reply != nil && ev.Data.Reply.ID == replyID
	}
}

// inbound enqueues an update at the simulator and waits for its event.
func (d *demo) inbound(ctx context.Context, what string, u models.Update, t normalize.Type) (*normalize.Event, error) {
	sent := time.Now()
	d.sim.Enqueue(u)
	ev, at, err := d.events.wait(ctx, string(t), sent, isType(t, ""))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	d.hop("customer → Telegram → Parley: "+what, at.Sub(sent), fmt.Sprintf("%s %s", strings.TrimPrefix(string(ev.Type), "parley."), Summary(ev)))
	return ev, nil
}

// reply posts a reply through the HTTP API and waits for its status.
func (d *demo) reply(ctx context.Context, what string, r normalize.Reply, want normalize.Type) (*normalize.Event, error) {
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
	d.hop("helpdesk → Parley → Telegram: "+what, at.Sub(sent), Summary(ev))
	return ev, nil
}

func (d *demo) script(ctx context.Context) error {
	maria := models.User{ID: 412587349, FirstName: "María", LastName: "López", Username: "marialopez", LanguageCode: "es"}
	bob := models.User{ID: 5550001, FirstName: "Bob", LanguageCode: "en"}

	d.say("Conversation with María (Telegram chat %d):", maria.ID)
	hello := d.sim.UserText(maria.ID, maria, "Hola! Where is my order #8812?")
	ev, err := d.inbound(ctx, "text", hello, normalize.TypeMessageReceived)
	if err != nil {
		return err
	}
	d.mariaConv = ev.Subject

	// The first answer meets Telegram's flood control once.
	d.sim.FailNext("sendMessage", 1, telegramsim.TooManyRequests(1))
	st, err := d.reply(ctx, "answer with buttons (429 retry_after 1s)", normalize.Reply{
		ID: "demo-reply-1", ConversationID: d.mariaConv,
		Text:    "Your order **#8812** ships _today_. Anything else?",
		Choices: []normalize.Choice{{ID: "all-good", Title: "All good, thanks"}, {ID: "change-address", Title: "Change address"}},
	}, normalize.TypeReplySent)
	if err != nil {
		return err
	}
	if st.Data.Reply.Attempts < 2 {
		return fmt.Errorf("reply 1 took %d attempts; the 429 was not retried", st.Data.Reply.Attempts)
	}
	sentToMaria := d.sim.SentTo(maria.ID)
	if len(sentToMaria) != 1 {
		return fmt.Errorf("the simulator holds %d messages to María, want 1", len(sentToMaria))
	}
	answer := sentToMaria[0]
	if answer.ParseMode != "HTML" || !strings.Contains(answer.Text, "<b>#8812</b>") || !strings.Contains(string(answer.ReplyMarkup), "change-address") {
		return fmt.Errorf("reply 1 reached Telegram as %q (parse mode %q, markup %s)", answer.Text, answer.ParseMode, answer.ReplyMarkup)
	}

	photo := d.sim.Photo(maria.ID, maria, "the parcel label", demoPhoto())
	ev, err = d.inbound(ctx, "photo", photo, normalize.TypeMessageReceived)
	if err != nil {
		return err
	}
	if len(ev.Data.Message.Attachments) != 1 {
		return fmt.Errorf("photo event has %d attachments", len(ev.Data.Message.Attachments))
	}
	att := ev.Data.Message.Attachments[0]
	sent := time.Now()
	stored, at, err := d.events.wait(ctx, "media.stored", sent.Add(-time.Minute), func(e *normalize.Event) bool {
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
	d.hop("media job → object store → GET /v1/media", max(at.Sub(sent), 0), Summary(stored))

	loc := d.sim.Location(maria.ID, maria, 40.41678, -3.70379)
	if _, err := d.inbound(ctx, "location", loc, normalize.TypeMessageReceived); err != nil {
		return err
	}
	edit := d.sim.EditedText(maria.ID, maria, hello.Message.ID, "Hola! Where is my order #8812? (it was due Monday)")
	if _, err := d.inbound(ctx, "edit", edit, normalize.TypeMessageEdited); err != nil {
		return err
	}
	reaction := d.sim.Reaction(maria.ID, maria, answer.MessageID, "👍")
	if _, err := d.inbound(ctx, "reaction", reaction, normalize.TypeReactionAdded); err != nil {
		return err
	}
	press := d.sim.CallbackQuery(maria.ID, maria, answer.MessageID, "all-good")
	ev, err = d.inbound(ctx, "button press", press, normalize.TypePostbackReceived)
	if err != nil {
		return err
	}
	if ev.Data.Message.Postback.ID != "all-good" {
		return fmt.Errorf("button press arrived as %q", ev.Data.Message.Postback.ID)
	}
	if err := waitFor(ctx, func() bool { return len(d.sim.CallbackAnswers()) == 1 }); err != nil {
		return fmt.Errorf("the button press was not answered with answerCallbackQuery")
	}

	// The second answer meets a Telegram outage once.
	d.sim.FailNext("sendMessage", 1, telegramsim.InternalServerError())
	st, err = d.reply(ctx, "answer (500 once)", normalize.Reply{
		ID: "demo-reply-2", ConversationID: d.mariaConv, Text: "Great — have a nice day!",
		ReplyTo: fmt.Sprint(answer.MessageID),
	}, normalize.TypeReplySent)
	if err != nil {
		return err
	}
	if st.Data.Reply.Attempts < 2 {
		return fmt.Errorf("reply 2 took %d attempts; the 500 was not retried", st.Data.Reply.Attempts)
	}

	d.say("\nConversation with Bob (Telegram chat %d), who then blocks the bot:", bob.ID)
	ev, err = d.inbound(ctx, "text", d.sim.UserText(bob.ID, bob, "hi"), normalize.TypeMessageReceived)
	if err != nil {
		return err
	}
	bobConv := ev.Subject
	d.sim.Block(bob.ID)
	st, err = d.reply(ctx, "answer to a blocked bot (403)", normalize.Reply{
		ID: "demo-reply-3", ConversationID: bobConv, Text: "Hi Bob, how can we help?",
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
	if len(dead) != 1 || dead[0].ReplyID != "demo-reply-3" {
		return fmt.Errorf("the dead-letter queue holds %d replies, want demo-reply-3 alone", len(dead))
	}
	d.hop("dead-letter queue", 0, fmt.Sprintf("seq %d: %s %s (%s)", dead[0].Seq, dead[0].ReplyID, dead[0].Code, dead[0].Message))

	// Exactly once: every reply has exactly one status, and Telegram holds
	// exactly the messages Parley was asked to send.
	for _, id := range []string{"demo-reply-1", "demo-reply-2", "demo-reply-3"} {
		if n := d.events.count(isStatus(id)); n != 1 {
			return fmt.Errorf("reply %s has %d status events, want 1", id, n)
		}
	}
	if n := len(d.sim.SentTo(maria.ID)); n != 2 {
		return fmt.Errorf("Telegram holds %d messages to María, want 2 (no duplicates)", n)
	}
	if n := d.events.count(isType(normalize.TypeMessageReceived, "")); n != 4 {
		return fmt.Errorf("%d message.received events, want 4 (no duplicates)", n)
	}
	d.say("\nChecked: 3 replies with one status each, 2 messages delivered to María (none twice), 1 dead letter.")
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
