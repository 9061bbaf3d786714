package outbox

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

// TestOneInstanceOwnsAConnectorsRepliesAndHandsThemOver: two instances on
// one NATS. One sends at a time; when a second joins, and when the owner
// stops, the replies move on without a gap, a duplicate or a reordering.
func TestOneInstanceOwnsAConnectorsRepliesAndHandsThemOver(t *testing.T) {
	e := newEnv(t)
	const convs, perConv = 20, 12
	senders := map[string]*fakeSender{"a": {delay: 5 * time.Millisecond}, "b": {delay: 5 * time.Millisecond}}
	outboxes := map[string]*Outbox{}
	stops := map[string]func(){}
	start := func(name string) {
		o := e.newOutbox(t, senders[name], func(o *Options) {
			o.InstanceID = "instance-" + name
			o.Connectors = func() []string { return []string{testConnector} }
		})
		outboxes[name] = o
		stops[name] = e.start(t, o)
	}
	sent := func() int { return len(senders["a"].delivered()) + len(senders["b"].delivered()) }

	ids := make([]normalize.ConversationID, convs)
	for c := range convs {
		ids[c] = e.conversation(t, fmt.Sprint(3000+c), normalize.KindDirect, time.Now())
	}
	var replyIDs []string
	for r := range perConv {
		for c := range convs {
			id := fmt.Sprintf("own-c%d-r%02d", c, r)
			replyIDs = append(replyIDs, id)
			e.submit(t, reply(id, ids[c], fmt.Sprintf("c%d-r%02d", c, r)))
		}
	}
	// Slow enough that the hand-overs happen mid-way.
	senders["a"].delay, senders["b"].delay = 40*time.Millisecond, 40*time.Millisecond

	start("a")
	wait.For(t, 20*time.Second, "a third of the replies sent", func() bool { return sent() >= convs*perConv/3 })
	start("b")
	wait.For(t, 20*time.Second, "both instances to see each other", func() bool {
		return len(outboxes["a"].Members()) == 2 && len(outboxes["b"].Members()) == 2
	})
	wait.For(t, 20*time.Second, "two thirds of the replies sent", func() bool { return sent() >= 2*convs*perConv/3 })
	owner := ""
	wait.For(t, 10*time.Second, "one owner of the connector", func() bool {
		a, b := len(outboxes["a"].Owned()), len(outboxes["b"].Owned())
		switch {
		case a == 1 && b == 0:
			owner = "a"
		case a == 0 && b == 1:
			owner = "b"
		default:
			return false
		}
		return true
	})
	stopped := time.Now()
	stops[owner]()
	for _, id := range replyIDs {
		if ev := e.statuses.wait(t, id, 60*time.Second); ev.Type != normalize.TypeReplySent {
			t.Errorf("reply %s: %s, want reply.sent", id, ev.Type)
		}
	}

	// Every call of both instances in time order: the sender changes at
	// most twice (when b joined, if the connector became b's, and when the
	// owner stopped), so the two never sent at the same time.
	type call struct {
		sendCall
		by string
	}
	var all []call
	for name, s := range senders {
		for _, c := range s.history() {
			all = append(all, call{c, name})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].At.Before(all[j].At) })
	switches := 0
	for i := 1; i < len(all); i++ {
		if all[i].by != all[i-1].by {
			switches++
		}
	}
	if switches > 2 {
		t.Errorf("the sending instance changed %d times, want at most 2: both sent at once", switches)
	}
	other := map[string]string{"a": "b", "b": "a"}[owner]
	var first time.Time
	for _, c := range all {
		if c.by == other && c.At.After(stopped) {
			first = c.At
			break
		}
	}
	if first.IsZero() {
		t.Fatalf("%s never sent after %s stopped", other, owner)
	}
	t.Logf("%s sent its first reply %s after %s stopped", other, first.Sub(stopped).Round(time.Millisecond), owner)
	if gap := first.Sub(stopped); gap > 5*time.Second {
		t.Errorf("the hand-over took %s, want a few seconds at most", gap)
	}

	byConv := map[normalize.ConversationID][]string{}
	for _, c := range all {
		if c.Err == nil {
			byConv[c.Conv] = append(byConv[c.Conv], c.Part)
		}
	}
	for c, conv := range ids {
		var want []string
		for r := range perConv {
			want = append(want, fmt.Sprintf("c%d-r%02d", c, r))
		}
		if got := byConv[conv]; !slices.Equal(got, want) {
			t.Errorf("conversation %d received %v, want %v (in order, once each)", c, got, want)
		}
	}
	e.statuses.check(t)
}

func TestOwnerOfAConnector(t *testing.T) {
	members := map[string]presence{
		"i1": {Instance: "i1", Connectors: []string{"tg"}},
		"i2": {Instance: "i2", Connectors: []string{"tg", "wa"}, Sessions: []string{"wa"}},
		"i3": {Instance: "i3", Connectors: []string{"wa"}},
	}
	if got := ownerOf(members, "wa"); got != "i2" {
		t.Errorf("wa (session on i2) owned by %s", got)
	}
	if got := ownerOf(members, "tg"); got != "i1" && got != "i2" {
		t.Errorf("tg owned by %s, which does not run it", got)
	}
	if got := ownerOf(members, "gone"); got == "" {
		t.Error("a connector nobody runs has no owner; its commands would never fail")
	}
	// Stable: the same members give the same owner, whatever the order
	// (ownerOf ranges over a map, whose order Go varies from call to call,
	// so a result depending on it would differ here).
	for range 100 {
		if ownerOf(members, "tg") != ownerOf(members, "tg") {
			t.Fatal("ownerOf is not deterministic")
		}
	}
	// Spread: many connectors run everywhere land on every instance.
	counts := map[string]int{}
	every := map[string]presence{"i1": {Instance: "i1"}, "i2": {Instance: "i2"}, "i3": {Instance: "i3"}}
	for i := range 300 {
		counts[ownerOf(every, fmt.Sprintf("c%d", i))]++
	}
	for id, n := range counts {
		if n < 60 {
			t.Errorf("%s owns %d of 300 connectors: rendezvous hashing does not spread", id, n)
		}
	}
}

// TestADeepBacklogOfOneChatDelaysNoOtherChat: 12,000 replies queued for
// one chat paced at one message a second, two instances. A reply to
// another chat of the same account reaches the platform within a second
// or two, before and after the owner hands the connector over; the
// backlog waits parked, not in the consumer's MaxAckPending, and keeps its
// order.
func TestADeepBacklogOfOneChatDelaysNoOtherChat(t *testing.T) {
	if testing.Short() {
		t.Skip("queues 12,000 commands")
	}
	e := newEnv(t)
	const backlog = 12000
	busy := e.conversation(t, "1", normalize.KindDirect, time.Now())
	senders := map[string]*fakeSender{}
	stops := map[string]func(){}
	outboxes := map[string]*Outbox{}
	for _, name := range []string{"a", "b"} {
		s := &fakeSender{}
		// Telegram's pace for one chat; the account itself is fast.
		s.policy.Limits = connectors.Limits{Interval: time.Second, PerAccount: 30, Burst: 30}
		senders[name] = s
	}
	start := func(name string) {
		o := e.newOutbox(t, senders[name], func(o *Options) {
			o.InstanceID = "instance-" + name
			o.Connectors = func() []string { return []string{testConnector} }
		})
		outboxes[name] = o
		stops[name] = e.start(t, o)
	}

	ctx := testContext(t, 2*time.Minute)
	subject := e.b.Subjects().Command(testRegion, testPlatform, testConnector, string(busy))
	for i := 0; i < backlog; i += 500 {
		var msgs []bus.Message
		for j := i; j < min(i+500, backlog); j++ {
			id := fmt.Sprintf("deep-%05d", j)
			msgs = append(msgs, bus.Message{Subject: subject, MsgID: id, Data: mustJSON(t, reply(id, busy, id))})
		}
		if _, err := e.b.Publish(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	start("a")
	start("b")
	owner := func() string {
		for name, o := range outboxes {
			if len(o.Owned()) == 1 {
				return name
			}
		}
		return ""
	}
	wait.For(t, 30*time.Second, "the backlog parked", func() bool {
		ci, err := e.reg.Commands.Consumer(ctx, PartitionConsumer(testConnector))
		if err != nil {
			return false
		}
		info, err := ci.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending <= maxHeldPerConversation+10 && owner() != ""
	})

	other := func(name string) {
		conv := e.conversation(t, name, normalize.KindDirect, time.Now())
		submitted := time.Now()
		e.submit(t, reply(name, conv, name))
		wait.For(t, 20*time.Second, "the other chat's reply sent", func() bool {
			for _, s := range senders {
				for _, c := range s.delivered() {
					if c.Conv == conv {
						return true
					}
				}
			}
			return false
		})
		d := time.Since(submitted)
		t.Logf("%s reached the platform %s after it was submitted, behind %d queued replies of one chat", name, d.Round(time.Millisecond), backlog)
		if d > 2*time.Second {
			t.Errorf("%s waited %s behind the backlog of another chat", name, d)
		}
	}
	other("other-1")

	first := owner()
	stops[first]()
	next := map[string]string{"a": "b", "b": "a"}[first]
	wait.For(t, 20*time.Second, "the other instance to own the connector", func() bool { return len(outboxes[next].Owned()) == 1 })
	other("other-2")
	wait.For(t, 20*time.Second, "the new owner to send the backlog on", func() bool {
		for _, c := range senders[next].delivered() {
			if c.Conv == busy {
				return true
			}
		}
		return false
	})

	// The busy chat's replies so far, across both owners, in order and once.
	var got []string
	for _, name := range []string{first, next} {
		for _, c := range senders[name].delivered() {
			if c.Conv == busy {
				got = append(got, c.Part)
			}
		}
	}
	for i, p := range got {
		if want := fmt.Sprintf("deep-%05d", i); p != want {
			t.Fatalf("busy chat's reply %d was %s, want %s (in order, once each): %v", i, p, want, got)
		}
	}
	t.Logf("busy chat: %d replies sent in order at its pace", len(got))
}

// TestAnAccountWideRetryAfterHoldsBackTheWholeAccount: a platform that
// throttles the account (an app or page limit) stops every conversation
// of it for exactly as long; a per-chat one stops only its chat.
func TestAnAccountWideRetryAfterHoldsBackTheWholeAccount(t *testing.T) {
	for _, scope := range []connectors.Scope{connectors.ScopeAccount, connectors.ScopeConversation} {
		t.Run(fmt.Sprint("scope ", scope), func(t *testing.T) {
			e := newEnv(t)
			const hold = 1500 * time.Millisecond
			sender := &fakeSender{script: func(c sendCall, nth int) error {
				if c.Part == "first" && nth == 1 {
					if scope == connectors.ScopeAccount {
						return connectors.AccountRetryAfter(hold, "613", errors.New("page limit"))
					}
					return connectors.RetryAfter(hold, "429", errors.New("chat limit"))
				}
				return nil
			}}
			e.runOutbox(t, sender, func(o *Options) { o.InProcessRetry = 5 * time.Second })
			a := e.conversation(t, "1", normalize.KindDirect, time.Now())
			b := e.conversation(t, "2", normalize.KindDirect, time.Now())
			e.submit(t, reply("first", a, "first"))
			wait.For(t, 10*time.Second, "the first send", func() bool { return len(sender.history()) > 0 })
			throttledAt := sender.history()[0].At
			e.submit(t, reply("second", b, "second"))
			e.statuses.wait(t, "first", 20*time.Second)
			e.statuses.wait(t, "second", 20*time.Second)
			var firstAt, secondAt time.Time
			for _, c := range sender.delivered() {
				switch c.Part {
				case "first":
					firstAt = c.At
				case "second":
					secondAt = c.At
				}
			}
			if d := firstAt.Sub(throttledAt); d < hold {
				t.Errorf("the throttled chat was tried again after %s, want %s", d, hold)
			}
			waited := secondAt.Sub(throttledAt)
			if scope == connectors.ScopeAccount && waited < hold {
				t.Errorf("another chat of the account was sent to %s after an account-wide retry-after of %s", waited, hold)
			}
			if scope == connectors.ScopeConversation && secondAt.After(firstAt) {
				t.Errorf("another chat waited out a per-chat retry-after")
			}
		})
	}
}

// TestLimitsHoldAcrossInstances: two instances share one account's budget
// (20 messages a second, bursts of 5) without asking each other, because
// one of them owns the connector: together they never send faster.
func TestLimitsHoldAcrossInstances(t *testing.T) {
	e := newEnv(t)
	senders := []*fakeSender{{}, {}}
	for i, s := range senders {
		s.policy.Limits = connectors.Limits{PerAccount: 20, Burst: 5}
		e.runOutbox(t, s, func(o *Options) {
			o.InstanceID = fmt.Sprint("limits-", i)
			o.Connectors = func() []string { return []string{testConnector} }
		})
	}
	const n = 60
	for i := range n {
		conv := e.conversation(t, fmt.Sprint(8000+i), normalize.KindDirect, time.Now())
		e.submit(t, reply(fmt.Sprint("lim-", i), conv, "hi"))
	}
	for i := range n {
		e.statuses.wait(t, fmt.Sprint("lim-", i), 30*time.Second)
	}
	var at []time.Time
	for _, s := range senders {
		for _, c := range s.delivered() {
			at = append(at, c.At)
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	// In any window of one second, at most the rate plus the burst.
	for i := range at {
		j := i
		for j < len(at) && at[j].Sub(at[i]) < time.Second {
			j++
		}
		if j-i > 25 {
			t.Fatalf("%d sends within one second from %s, want at most 25 (20/s, burst 5)", j-i, at[i].Format(time.StampMilli))
		}
	}
	if d := at[len(at)-1].Sub(at[0]); d < 2500*time.Millisecond {
		t.Errorf("%d sends took %s, want ≥ 2.5 s at 20/s after a burst of 5", n, d)
	}
}

// TestASessionHolderOwnsItsConnectorsReplies: a connector whose sends need
// its live session is owned by the instance holding the session, and the
// ownership follows the session when it moves.
func TestASessionHolderOwnsItsConnectorsReplies(t *testing.T) {
	e := newEnv(t)
	var holder atomic.Value
	holder.Store("b")
	outboxes := map[string]*Outbox{}
	for _, name := range []string{"a", "b"} {
		s := &fakeSender{}
		o := e.newOutbox(t, s, func(o *Options) {
			o.InstanceID = name
			o.Connectors = func() []string { return []string{testConnector} }
			o.Lookup = func(id string) (Target, bool) {
				mine := holder.Load() == name
				return Target{Sender: s, Platform: testPlatform, Session: mine, Standby: !mine}, id == testConnector
			}
		})
		outboxes[name] = o
		e.start(t, o)
	}
	owns := func(name string) func() bool {
		return func() bool {
			return len(outboxes[name].Owned()) == 1 && len(outboxes[map[string]string{"a": "b", "b": "a"}[name]].Owned()) == 0
		}
	}
	wait.For(t, 20*time.Second, "b, the session holder, to own the connector", owns("b"))
	holder.Store("a")
	wait.For(t, 20*time.Second, "the ownership to follow the session to a", owns("a"))
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	e.submit(t, reply("r-session", conv, "via the device"))
	if ev := e.statuses.wait(t, "r-session", 20*time.Second); ev.Type != normalize.TypeReplySent {
		t.Fatalf("status %s, want reply.sent", ev.Type)
	}
}
