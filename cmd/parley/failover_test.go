package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/internal/bustest"
)

// TestOutboxSurvivesTheOwnerKilledUnderLoad: two, then three, `parley
// serve` processes on one NATS server; the instance sending the connector's
// replies is killed with SIGKILL mid-way. Every reply is still sent, in
// order per conversation, with at most the parts that were in flight at
// the kill sent twice, and each ends in exactly one reply.sent; another
// instance takes the connector over within the lease TTL and the ack wait.
func TestOutboxSurvivesTheOwnerKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildParley(t)
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprint(n, " instances"), func(t *testing.T) { ownerKilledUnderLoad(t, bin, n) })
	}
}

func ownerKilledUnderLoad(t *testing.T, bin string, n int) {
	natsURL, _, _ := bustest.StartServer(t)
	const token = "7272:FAILOVER-SECRET"
	sim, err := telegramsim.NewServer(telegramsim.Options{
		Token: token, Latency: 20 * time.Millisecond,
		PerChatInterval: telegramsim.Disabled, GlobalPerSecond: telegramsim.Disabled, GroupPerMinute: telegramsim.Disabled,
	})
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
api: {tokens: ["fo-token"]}
connectors:
  - id: tg-fo
    platform: telegram
    region: ap
    telegram:
      token_file: %q
      mode: polling
      poll_timeout: 1s
      api_url: %q
      limits: {per_account: 300, burst: 30, per_conversation: 5ms, per_group: 5ms}
`, filepath.Join(dir, "data-"+name), natsURL, addr, tokenFile, sim.URL))
		return &instance{name: name, base: "http://" + addr, p: startProc(t, bin, dir, nil, "serve", "--config", cfg)}
	}
	var instances []*instance
	for i := range n {
		instances = append(instances, start(string(rune('a'+i))))
	}
	for _, in := range instances {
		waitReadyProc(t, in.base, in.p)
	}

	const chats, perChat = 30, 30
	from := func(chat int64) models.User { return models.User{ID: chat, FirstName: fmt.Sprint("Customer ", chat)} }
	for c := range int64(chats) {
		sim.Enqueue(sim.UserText(5000+c, from(5000+c), fmt.Sprintf("hello from %d", 5000+c)))
	}
	convs := make([]string, chats)
	if err := waitCond(30*time.Second, func() bool {
		for c := range chats {
			if convs[c] != "" {
				continue
			}
			want := fmt.Sprintf("hello from %d", 5000+c)
			if got := scanStream(t, js, "PARLEY_EVT_AP", func(m *evMsg) bool { return m.text() == want }); len(got) == 1 {
				convs[c] = got[0].E.Subject
			} else {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("inbound messages not stored: %v", err)
	}
	statuses := newCollector(t, js, "PARLEY_EVT_AP", "parley.evt.ap.*.*.*.status")

	owner := func(in *instance) bool {
		r := doHTTP(t, http.MethodGet, in.base+"/metrics", "", nil, nil)
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, `parley_outbox_partitions_owned{region="ap"}`) {
				return strings.HasSuffix(line, " 1")
			}
		}
		return false
	}
	var victim *instance
	if err := waitCond(30*time.Second, func() bool {
		victim = nil
		n := 0
		for _, in := range instances {
			if owner(in) {
				victim, n = in, n+1
			}
		}
		return n == 1
	}); err != nil {
		t.Fatalf("no single owner of the connector's replies: %v", err)
	}

	// Replies, in order per chat, posted to the instances in turn; each
	// chat's posts are sequential, so the stored order is the posting order.
	post := func(r int, survivors []*instance) {
		var wg sync.WaitGroup
		for c := range chats {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := survivors[(c+r)%len(survivors)]
				body := fmt.Sprintf(`{"id":"fo-%02d-%02d","conversation_id":%q,"text":"fo %02d %02d"}`, c, r, convs[c], c, r)
				res := doHTTP(t, http.MethodPost, in.base+"/v1/replies", "fo-token", map[string]string{"Content-Type": "application/json"}, strings.NewReader(body))
				if res.status != http.StatusAccepted {
					t.Errorf("POST reply %d/%d to %s: %s", c, r, in.name, res)
				}
			}()
		}
		wg.Wait()
	}
	var survivors []*instance
	for _, in := range instances {
		if in != victim {
			survivors = append(survivors, in)
		}
	}
	for r := range perChat / 2 {
		post(r, instances)
	}
	if err := waitCond(30*time.Second, func() bool { return len(sim.Sent()) >= chats*perChat/4 }); err != nil {
		t.Fatalf("replies not flowing: %v\n%s", err, victim.p.output())
	}
	killed := time.Now()
	_ = victim.p.cmd.Process.Signal(syscall.SIGKILL)
	victim.p.wait(10 * time.Second)
	atKill := len(sim.Sent())
	for r := perChat / 2; r < perChat; r++ {
		post(r, survivors)
	}

	unique := func() map[string]int {
		seen := map[string]int{}
		for _, m := range sim.Sent() {
			seen[m.Text]++
		}
		return seen
	}
	if err := waitCond(120*time.Second, func() bool { return len(unique()) == chats*perChat }); err != nil {
		t.Fatalf("after the kill, %d of %d replies sent: %v\n%s\n%s", len(unique()), chats*perChat, err,
			survivors[0].p.output(), survivors[1].p.output())
	}
	var resumed time.Time
	for _, m := range sim.Sent()[atKill:] {
		resumed = m.Time
		break
	}
	t.Logf("the owner was killed after %d of %d sends; the next send came %s later, all sent %s after the kill",
		atKill, chats*perChat, resumed.Sub(killed).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	// Order per chat, counting a part sent again right after itself (the
	// one in flight at the kill) as the documented duplicate.
	dups := 0
	for c := range chats {
		var got []string
		for _, m := range sim.SentTo(5000 + int64(c)) {
			if n := len(got); n > 0 && got[n-1] == m.Text {
				dups++
				continue
			}
			got = append(got, m.Text)
		}
		for r := range perChat {
			if want := fmt.Sprintf("fo %02d %02d", c, r); r >= len(got) || got[r] != want {
				t.Fatalf("chat %d received %q, want \"fo %02d 00\" … \"fo %02d %02d\" in order", c, got, c, c, perChat-1)
			}
		}
	}
	if dups > chats {
		t.Errorf("%d parts sent twice; at most one per conversation was in flight at the kill", dups)
	}
	t.Logf("%d parts sent twice (in flight when the owner was killed)", dups)

	if err := waitCond(30*time.Second, func() bool {
		n := 0
		for _, m := range statuses.all() {
			if m.E.Type == "parley.reply.sent" {
				n++
			}
		}
		return n >= chats*perChat
	}); err != nil {
		t.Errorf("reply.sent events: %v", err)
	}
	final := map[string]int{}
	for _, m := range statuses.all() {
		final[m.replyID()]++
	}
	for c := range chats {
		for r := range perChat {
			if id := fmt.Sprintf("fo-%02d-%02d", c, r); final[id] != 1 {
				t.Errorf("reply %s has %d final statuses, want exactly 1", id, final[id])
			}
		}
	}
}
