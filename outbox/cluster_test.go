package outbox

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

// TestTheOutboxRidesOutTheLossOfTheStreamLeader: a three-node JetStream
// cluster with R3 streams and buckets; the server leading the commands
// stream is killed while replies are being sent and submitted. Every reply
// is still sent once, in order per conversation, with one final status.
func TestTheOutboxRidesOutTheLossOfTheStreamLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster")
	}
	c := bustest.StartCluster(t, 3)
	b := bustest.Start(t, func(o *bus.Options) { o.URL, o.Replicas, o.DataDir = c.URL, 3, "" })
	e := newEnvOn(t, b)
	sender := &fakeSender{delay: 3 * time.Millisecond}
	e.runOutbox(t, sender, func(o *Options) { o.Connectors = func() []string { return []string{testConnector} } })

	const convs, perConv = 20, 20
	ids := make([]normalize.ConversationID, convs)
	for i := range convs {
		ids[i] = e.conversation(t, fmt.Sprint(7000+i), normalize.KindDirect, time.Now())
	}
	// submit stores replies as a helpdesk does: a reply that cannot be
	// stored during the election is submitted again with the same id.
	submit := func(from, to int) {
		for r := from; r < to; r++ {
			for i := range convs {
				id := fmt.Sprintf("cl-c%02d-r%02d", i, r)
				var err error
				ok := wait.Poll(testContext(t, 60*time.Second), func() bool {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_, err = Submit(ctx, e.b, e.dir, reply(id, ids[i], id))
					return err == nil
				})
				if !ok {
					t.Fatalf("submitting %s: %v", id, err)
				}
			}
		}
	}
	submit(0, perConv/2)
	wait.For(t, 30*time.Second, "replies flowing", func() bool { return len(sender.delivered()) >= convs*perConv/5 })

	info, err := e.reg.Commands.Info(testContext(t, 10*time.Second))
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("commands stream info: %+v, %v", info, err)
	}
	killed := time.Now()
	c.Kill(info.Cluster.Leader)
	t.Logf("killed %s, the leader of %s, after %d sends", info.Cluster.Leader, info.Config.Name, len(sender.delivered()))
	submit(perConv/2, perConv) // publishes retried through the election

	for i := range convs {
		for r := range perConv {
			id := fmt.Sprintf("cl-c%02d-r%02d", i, r)
			if ev := e.statuses.wait(t, id, 90*time.Second); ev.Type != normalize.TypeReplySent {
				t.Errorf("%s: %s, want reply.sent", id, ev.Type)
			}
		}
	}
	t.Logf("all %d replies sent %s after the kill", convs*perConv, time.Since(killed).Round(time.Millisecond))
	byConv := map[normalize.ConversationID][]string{}
	for _, call := range sender.delivered() {
		byConv[call.Conv] = append(byConv[call.Conv], call.Part)
	}
	for i, conv := range ids {
		var want []string
		for r := range perConv {
			want = append(want, fmt.Sprintf("cl-c%02d-r%02d", i, r))
		}
		if got := byConv[conv]; !slices.Equal(got, want) {
			t.Errorf("conversation %d received %v, want %v (in order, once each)", i, got, want)
		}
	}
	e.statuses.check(t)
}
