package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/internal/bustest"
)

// BenchmarkServeOutbox measures the outbox through the real binary: one or
// two `parley serve` processes on one NATS server, a Telegram simulator
// answering every call after 100 ms, 10,000 conversations, two replies
// each published by a helpdesk straight to NATS. It reports replies/s from
// the first publish to the last reply.sent, and fails on a lost,
// duplicated or reordered reply or a missing or repeated status. Run it
// once: go test -run '^$' -bench ServeOutbox -benchtime 1x ./cmd/parley/
//
// The busy variants first queue 2,000 replies to one group paced at one
// message a second: the others' rate must not drop. The baseline sends as
// many messages straight to the simulator from 256 workers (the outbox's
// sends in flight), the most the simulator and this machine allow.
func BenchmarkServeOutbox(b *testing.B) {
	b.Run("baseline", func(b *testing.B) {
		for range b.N {
			benchSimBaseline(b)
		}
	})
	for _, v := range []struct {
		instances int
		busy      bool
	}{{1, false}, {1, true}, {2, false}, {2, true}} {
		b.Run(fmt.Sprintf("instances=%d/busy=%v", v.instances, v.busy), func(b *testing.B) {
			for range b.N {
				benchServeOutbox(b, v.instances, v.busy)
			}
		})
	}
}

const (
	benchChats, benchPerChat = 10000, 2
	benchGroup               = -1001234567
	benchGroupBacklog        = 2000
)

// benchSimBaseline sends benchChats*benchPerChat messages to a simulator
// answering in 100 ms from 256 workers.
func benchSimBaseline(b *testing.B) {
	const token = "7374:BASE-SECRET"
	sim, err := telegramsim.NewServer(telegramsim.Options{
		Token: token, Latency: 100 * time.Millisecond,
		PerChatInterval: telegramsim.Disabled, GlobalPerSecond: telegramsim.Disabled, GroupPerMinute: telegramsim.Disabled,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	jobs := make(chan int)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				body := fmt.Sprintf(`{"chat_id":%d,"text":"base %d"}`, 100000+i%benchChats, i)
				resp, err := client.Post(sim.URL+"/bot"+token+"/sendMessage", "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for i := range benchChats * benchPerChat {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	b.ReportMetric(float64(benchChats*benchPerChat)/time.Since(start).Seconds(), "replies/s")
}

func benchServeOutbox(b *testing.B, instances int, busy bool) {
	const chats, perChat = benchChats, benchPerChat
	bin := buildParley(b)
	natsURL, _, _ := bustest.StartServer(b)
	const token = "7373:BENCH-SECRET"
	sim, err := telegramsim.NewServer(telegramsim.Options{
		Token: token, Latency: 100 * time.Millisecond,
		PerChatInterval: telegramsim.Disabled, GlobalPerSecond: telegramsim.Disabled, GroupPerMinute: telegramsim.Disabled,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sim.Close() })
	dir := b.TempDir()
	tokenFile := writeFile(b, filepath.Join(dir, "token"), token+"\n")
	nc, err := nats.Connect(natsURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)

	groupGap := "1ms"
	if busy {
		groupGap = "1s"
	}
	var procs []*proc
	for i := range instances {
		addr := mustFreeAddr(b)
		cfg := writeFile(b, filepath.Join(dir, fmt.Sprintf("i%d.yaml", i)), fmt.Sprintf(`data_dir: %q
nats: {url: %q}
http: {listen: %q}
api: {tokens: ["bench-token"]}
connectors:
  - id: tg-bench
    platform: telegram
    region: eu
    telegram:
      token_file: %q
      mode: polling
      poll_timeout: 1s
      api_url: %q
      limits: {per_account: 0, per_conversation: 1ms, per_group: %s}
`, filepath.Join(dir, fmt.Sprint("data-", i)), natsURL, addr, tokenFile, sim.URL, groupGap))
		p := startProc(b, bin, dir, nil, "serve", "--config", cfg)
		procs = append(procs, p)
		waitReadyProc(b, "http://"+addr, p)
	}

	// The conversations, through the real ingest path.
	for c := range chats {
		chat := int64(100000 + c)
		sim.Enqueue(sim.UserText(chat, models.User{ID: chat, FirstName: "B"}, "hi"))
	}
	want := chats
	if busy {
		sim.Enqueue(sim.UserText(benchGroup, models.User{ID: 99, FirstName: "G"}, "busy group"))
		want++
	}
	convs := map[string]string{} // chat id → conversation id
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "PARLEY_EVT_EU", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"parley.evt.eu.*.*.*.message"}})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	for len(convs) < want {
		m, err := it.Next()
		if err != nil {
			b.Fatalf("reading events: %v (%d conversations)", err, len(convs))
		}
		var ev struct {
			Subject string `json:"subject"`
			Data    struct {
				Conversation struct {
					PlatformID string `json:"platform_id"`
				} `json:"conversation"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data(), &ev) == nil {
			convs[ev.Data.Conversation.PlatformID] = ev.Subject
		}
	}
	it.Stop()

	var mu sync.Mutex
	statuses := map[string]int{}
	done := make(chan struct{})
	sub, err := nc.Subscribe("parley.evt.eu.*.*.*.status", func(m *nats.Msg) {
		var ev struct {
			Type string `json:"type"`
			Data struct {
				Reply struct {
					ID string `json:"id"`
				} `json:"reply"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ev.Type == "parley.reply.sent" && strings.HasPrefix(ev.Data.Reply.ID, "b-") {
			statuses[ev.Data.Reply.ID]++
			if len(statuses) == chats*perChat {
				select {
				case <-done:
				default:
					close(done)
				}
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	// publish stores replies as a helpdesk on NATS would, pipelined.
	type cmd struct{ id, conv, text string }
	publish := func(cmds []cmd) {
		futures := make([]jetstream.PubAckFuture, 0, len(cmds))
		for _, c := range cmds {
			body := fmt.Sprintf(`{"id":%q,"conversation_id":%q,"text":%q}`, c.id, c.conv, c.text)
			f, err := js.PublishAsync("parley.cmd.eu.telegram.tg-bench."+c.conv+".send", []byte(body), jetstream.WithMsgID(c.id))
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatalf("publishing a reply: %v", err)
			case <-ctx.Done():
				b.Fatal("publishing replies timed out")
			}
		}
	}
	if busy {
		var cmds []cmd
		for i := range benchGroupBacklog {
			cmds = append(cmds, cmd{fmt.Sprintf("g-%04d", i), convs[fmt.Sprint(benchGroup)], fmt.Sprintf("group %04d", i)})
		}
		publish(cmds)
	}

	b.ResetTimer()
	start := time.Now()
	for r := range perChat {
		cmds := make([]cmd, 0, chats)
		for c := range chats {
			cmds = append(cmds, cmd{fmt.Sprintf("b-%05d-%d", c, r), convs[fmt.Sprint(100000+c)], fmt.Sprintf("bench %05d %d", c, r)})
		}
		publish(cmds)
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		b.Fatalf("%d of %d reply.sent within 5 minutes", len(statuses), chats*perChat)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(chats*perChat)/elapsed.Seconds(), "replies/s")

	texts := map[int64][]string{}
	direct := 0
	for _, m := range sim.Sent() {
		texts[m.ChatID] = append(texts[m.ChatID], m.Text)
		if m.ChatID > 0 {
			direct++
		}
	}
	if direct != chats*perChat {
		b.Errorf("the simulator received %d messages, want %d (no loss, no duplicate)", direct, chats*perChat)
	}
	if busy {
		g := texts[benchGroup]
		for i, text := range g {
			if want := fmt.Sprintf("group %04d", i); text != want {
				b.Fatalf("the busy group's message %d was %q, want %q", i, text, want)
			}
		}
		b.ReportMetric(float64(len(g)), "group-sent")
	}
	for c := range chats {
		got := texts[int64(100000+c)]
		want := []string{fmt.Sprintf("bench %05d 0", c), fmt.Sprintf("bench %05d 1", c)}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			b.Fatalf("chat %d received %q, want %q", 100000+c, got, want)
		}
	}
	mu.Lock()
	for id, n := range statuses {
		if n != 1 {
			b.Errorf("reply %s: %d reply.sent", id, n)
		}
	}
	mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Kill()
	}
}
