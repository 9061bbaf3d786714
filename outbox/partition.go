package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
)

// A region's reply commands are partitioned by connector: each connector's
// commands have their own durable consumer, "outbox-<connector>", and one
// instance at a time owns it, under a lease. The owner alone sends the
// connector's replies, so it keeps their order per conversation from its
// own memory and spends every budget of the connector's accounts exactly,
// without asking anybody before a send. See docs/operations.md.

// Lease keys in the region's leases bucket: an instance's presence, and the
// ownership of a connector's commands.
const (
	memberKeyPrefix    = "outbox.member."
	partitionKeyPrefix = "outbox.partition."
)

// discoverEvery paces the scans of the commands stream for connectors that
// have commands but no consumer yet (most are found at once, by
// subscription; the scan catches those published while no instance ran).
const discoverEvery = time.Minute

// PartitionConsumer names the durable consumer of a connector's commands
// (connector as a subject token).
func PartitionConsumer(connectorToken string) string { return ConsumerName + "-" + connectorToken }

// partition is one connector's commands and this instance's state while it
// owns them: the commands it holds, by conversation. Its maps are guarded
// by the Outbox's mu.
type partition struct {
	o      *Outbox
	token  string // the connector's subject token
	name   string // consumer
	filter string
	key    string // lease

	ctx      context.Context // the ownership: ends with it; not in-flight sends
	owned    bool
	stopping bool
	convs    map[string]*convQueue // active conversations by queue key
	items    map[uint64]*item      // commands held, by stream sequence
	// verified lists the conversations known to have no command earlier
	// than the ones this owner holds anywhere in the stream: checked once
	// per conversation and ownership, again after one of its commands went
	// back to the stream (a retry, a hand-back).
	verified map[string]struct{}
	// delivered is the last stream sequence the consumer had delivered
	// when this ownership began: commands up to it may be held by the
	// previous owner, or handed back; later ones come to this owner, in
	// order. 0 until the consumer answered.
	delivered uint64
	cons      jetstream.Consumer // the consumer as last created; nil before
	wg        sync.WaitGroup

	parked     map[string]*parkState // conversations with parked commands; see park.go
	parkQ      []parkJob             // commands waiting to be parked, in order
	parkNotify chan struct{}
}

// presence is what an instance announces of itself: the connectors it runs
// and those whose session it holds (connectors.SendAffinity).
type presence struct {
	Instance   string   `json:"instance"`
	Connectors []string `json:"connectors,omitempty"` // subject tokens
	Sessions   []string `json:"sessions,omitempty"`
}

// assignment is the region's live outbox instances as this one sees them,
// and so which connectors it should own. A connector goes to the instance
// holding its session when it needs one; else, by rendezvous hashing, to
// one of the instances that run it (or of all, when none does, so that its
// commands still fail visibly). Every instance computes the same from the
// same members, and a member joining or leaving moves only the connectors
// it gains or had.
type assignment struct {
	self string

	mu      sync.Mutex
	members map[string]presence // by instance, self included
	changed chan struct{}       // closed and replaced on every change
}

func newAssignment(self presence) *assignment {
	return &assignment{self: self.Instance, members: map[string]presence{self.Instance: self}, changed: make(chan struct{})}
}

// set replaces the members; self is kept as this instance last announced.
func (a *assignment) set(members map[string]presence) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := maps.Clone(members)
	m[a.self] = a.members[a.self]
	if maps.EqualFunc(m, a.members, presence.equal) {
		return
	}
	a.members = m
	close(a.changed)
	a.changed = make(chan struct{})
}

// setSelf records what this instance announces.
func (a *assignment) setSelf(p presence) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p.equal(a.members[a.self]) {
		return
	}
	a.members[a.self] = p
	close(a.changed)
	a.changed = make(chan struct{})
}

func (p presence) equal(q presence) bool {
	return p.Instance == q.Instance && slices.Equal(p.Connectors, q.Connectors) && slices.Equal(p.Sessions, q.Sessions)
}

// mine reports whether the connector is this instance's, and a channel
// closed at the next change of members.
func (a *assignment) mine(token string) (bool, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return ownerOf(a.members, token) == a.self, a.changed
}

func (a *assignment) instances() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.members))
}

// ownerOf is the instance that should own a connector's commands.
func ownerOf(members map[string]presence, token string) string {
	var sessions, running, all []string
	for id, p := range members {
		all = append(all, id)
		if slices.Contains(p.Sessions, token) {
			sessions = append(sessions, id)
		}
		if slices.Contains(p.Connectors, token) {
			running = append(running, id)
		}
	}
	switch {
	case len(sessions) > 0:
		// Two at once only for a moment, while a session moves.
		return slices.Min(sessions)
	case len(running) > 0:
		return rendezvous(running, token)
	}
	return rendezvous(all, token)
}

// rendezvous is the candidate with the highest score for token.
func rendezvous(candidates []string, token string) string {
	var best string
	var bestScore uint64
	for _, c := range candidates {
		h := fnv.New64a()
		h.Write([]byte(c))
		h.Write([]byte{0})
		h.Write([]byte(token))
		if s := h.Sum64(); best == "" || s > bestScore || s == bestScore && c < best {
			best, bestScore = c, s
		}
	}
	return best
}

// self is this instance's presence as of now.
func (o *Outbox) self() presence {
	p := presence{Instance: o.opts.InstanceID}
	if o.opts.Connectors == nil {
		return p
	}
	for _, id := range o.opts.Connectors() {
		tok := bus.Token(id)
		p.Connectors = append(p.Connectors, tok)
		if t, ok := o.opts.Lookup(id); ok && t.Session {
			p.Sessions = append(p.Sessions, tok)
		}
	}
	slices.Sort(p.Connectors)
	slices.Sort(p.Sessions)
	return p
}

// announce keeps this instance's presence key written, renewed every third
// of the lease TTL and at once when what it runs changes, and deletes it
// when ctx ends.
func (o *Outbox) announce(ctx context.Context) {
	key := memberKeyPrefix + bus.Token(o.opts.InstanceID)
	var last presence
	var lastPut time.Time
	t := time.NewTicker(min(time.Second, o.leaseTTL/3))
	defer t.Stop()
	for {
		p := o.self()
		if !p.equal(last) || time.Since(lastPut) >= o.leaseTTL/3 {
			o.assign.setSelf(p)
			b, _ := json.Marshal(p)
			pctx, cancel := context.WithTimeout(ctx, max(o.leaseTTL/3, time.Second))
			_, err := o.leases.Put(pctx, key, b)
			cancel()
			if err == nil {
				last, lastPut = p, time.Now()
			} else if ctx.Err() == nil {
				o.log.Warn("outbox cannot announce this instance", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = o.leases.Delete(dctx, key)
			cancel()
			return
		case <-t.C:
		}
	}
}

// followMembers watches the presence keys and updates the assignment until
// ctx ends.
func (o *Outbox) followMembers(ctx context.Context) {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	for ctx.Err() == nil {
		err := o.watchMembers(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := bo.NextBackOff()
		o.log.Warn("outbox cannot follow the region's instances; retrying", "error", err, "retry_in", wait)
		if !kit.Sleep(ctx, wait) {
			return
		}
	}
}

func (o *Outbox) watchMembers(ctx context.Context) error {
	w, err := o.leases.Watch(ctx, memberKeyPrefix+"*")
	if err != nil {
		return fmt.Errorf("watching outbox members: %w", err)
	}
	defer func() { _ = w.Stop() }()
	live := map[string]presence{} // by key
	initial := true
	publish := func() {
		m := make(map[string]presence, len(live))
		for _, p := range live {
			m[p.Instance] = p
		}
		o.assign.set(m)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch of outbox members closed")
			}
			if e == nil { // the initial values are all in
				initial = false
				publish()
				o.knownOnce.Do(func() { close(o.known) })
				continue
			}
			var p presence
			if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &p) == nil && p.Instance != "" {
				live[e.Key()] = p
			} else {
				delete(live, e.Key())
			}
			if !initial {
				publish()
			}
		}
	}
}

// discover makes sure every connector with commands has its partition:
// those this instance runs, those seen published (a subscription on the
// region's command subjects) and those found in the stream at start and
// every discoverEvery.
func (o *Outbox) discover(ctx context.Context) {
	seen := make(chan string, 256)
	sub, err := o.opts.Bus.Conn().Subscribe(o.subj.Commands(o.opts.Region), func(m *nats.Msg) {
		if info, err := bus.ParseSubject(m.Subject); err == nil && info.Class == bus.ClassCommand {
			select {
			case seen <- info.Connector:
			default: // the next scan finds it
			}
		}
	})
	if err != nil {
		o.log.Warn("outbox cannot follow published commands; scanning the stream only", "error", err)
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	if o.opts.Connectors != nil {
		for _, id := range o.opts.Connectors() {
			o.ensurePartition(ctx, bus.Token(id))
		}
	}
	o.scanConnectors(ctx)
	t := time.NewTicker(discoverEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case tok := <-seen:
			o.ensurePartition(ctx, tok)
		case <-t.C:
			if o.opts.Connectors != nil {
				for _, id := range o.opts.Connectors() {
					o.ensurePartition(ctx, bus.Token(id))
				}
			}
			o.scanConnectors(ctx)
		}
	}
}

// scanConnectors finds the connectors that have commands in the stream.
func (o *Outbox) scanConnectors(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := o.opts.Handles.Commands.Info(sctx, jetstream.WithSubjectFilter(o.subj.Commands(o.opts.Region)))
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("outbox cannot list the connectors with commands", "error", err)
		}
		return
	}
	for subject := range info.State.Subjects {
		if si, err := bus.ParseSubject(subject); err == nil && si.Class == bus.ClassCommand {
			o.ensurePartition(ctx, si.Connector)
		}
	}
}

// ensurePartition starts owning-when-assigned the partition of a connector
// token, once.
func (o *Outbox) ensurePartition(ctx context.Context, token string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.parts[token]; ok || ctx.Err() != nil {
		return
	}
	p := &partition{
		o: o, token: token, name: PartitionConsumer(token),
		filter: o.subj.ConnectorCommands(o.opts.Region, token),
		key:    partitionKeyPrefix + token,
	}
	o.parts[token] = p
	o.partsWG.Add(1)
	go func() {
		defer o.partsWG.Done()
		o.runPartition(ctx, p)
	}()
}

// runPartition owns p whenever the assignment gives it to this instance,
// until ctx ends.
func (o *Outbox) runPartition(ctx context.Context, p *partition) {
	select {
	case <-o.known:
	case <-ctx.Done():
		return
	case <-time.After(min(o.leaseTTL, 3*time.Second)):
		// No view of the members yet (NATS trouble): go by this
		// instance's; the lease still keeps the partition to one owner.
	}
	for ctx.Err() == nil {
		mine, changed := o.assign.mine(p.token)
		if !mine {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		stopWatch := make(chan struct{})
		go func() {
			// Hand the partition over once the members changed so that it
			// is another's.
			for {
				select {
				case <-stopWatch:
					return
				case <-changed:
				}
				var m bool
				m, changed = o.assign.mine(p.token)
				if !m {
					cancel()
					return
				}
			}
		}()
		err := bus.RunWithLease(pctx, o.leases, p.key, o.opts.InstanceID, 0, p.serve, nil)
		close(stopWatch)
		cancel()
		if err != nil {
			o.log.Error("outbox partition lease failed", "connector", p.token, "error", err)
			if !kit.Sleep(ctx, time.Second) {
				return
			}
		}
	}
}

// serve delivers the partition's commands while this instance owns it:
// until ctx ends (the lease lost, the partition handed over, Run stopping).
// It then lets the sends in flight finish and record their outcome, and
// hands the commands it held back to the stream for the next owner.
func (p *partition) serve(ctx context.Context) error {
	o := p.o
	o.mu.Lock()
	p.ctx, p.owned, p.stopping = ctx, true, false
	p.convs, p.items, p.verified = map[string]*convQueue{}, map[uint64]*item{}, map[string]struct{}{}
	p.parked, p.parkQ, p.parkNotify = map[string]*parkState{}, nil, make(chan struct{}, 1)
	p.delivered, p.cons = 0, nil
	n := o.ownedLocked()
	o.mu.Unlock()
	o.log.Info("outbox owns a connector's replies", "connector", p.token)
	o.obs.Owned(n)

	parkerDone := make(chan struct{})
	go p.parker(ctx, parkerDone)
	gaugeDone := make(chan struct{})
	go p.reportBacklog(ctx, gaugeDone)
	for ctx.Err() == nil {
		// Later commands of a conversation with parked ones must be parked
		// behind them: know which before the first delivery.
		err := p.findParked(ctx)
		if err == nil {
			p.consume(ctx)
			break
		}
		o.log.Warn("outbox cannot look up parked commands; retrying", "connector", p.token, "error", err)
		kit.Sleep(ctx, time.Second)
	}

	o.mu.Lock()
	p.stopping = true
	o.mu.Unlock()
	<-parkerDone
	<-gaugeDone
	o.obs.Backlog(p.token, 0, 0)
	p.handBackUnparked()
	drained := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		o.log.Error("outbox: in-flight sends still running after the drain timeout", "connector", p.token, "timeout", drainTimeout)
	}
	o.mu.Lock()
	p.owned = false
	n = o.ownedLocked()
	o.mu.Unlock()
	o.obs.Owned(n)
	o.log.Info("outbox handed a connector's replies over", "connector", p.token)
	return nil
}

// consume keeps a Consume subscription on the partition's consumer until
// ctx ends, recreating the consumer when it fails or disappears.
func (p *partition) consume(ctx context.Context) {
	o := p.o
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(30*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	for ctx.Err() == nil {
		cc, err := p.subscribe(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := bo.NextBackOff()
			o.log.Warn("outbox consumer unavailable", "connector", p.token, "error", err, "retry_in", wait)
			if !kit.Sleep(ctx, wait) {
				return
			}
			continue
		}
		bo.Reset()
		select {
		case <-ctx.Done():
			cc.Stop()
			select {
			case <-cc.Closed():
			case <-time.After(5 * time.Second):
			}
			return
		case <-cc.Closed():
			o.log.Warn("outbox consumer stopped; subscribing again", "connector", p.token)
		}
	}
}

func (p *partition) subscribe(ctx context.Context) (jetstream.ConsumeContext, error) {
	o := p.o
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	o.mu.Lock()
	first := p.delivered == 0
	o.mu.Unlock()
	if first {
		p.reclaim(cctx)
	}
	cons, err := o.opts.Handles.Commands.CreateOrUpdateConsumer(cctx, jetstream.ConsumerConfig{
		Durable:       p.name,
		Description:   fmt.Sprintf("Parley outbox: reply commands of connector %s in region %s", p.token, o.opts.Region),
		FilterSubject: p.filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.opts.AckWait,
		MaxDeliver:    -1, // the outbox dead-letters by itself
		MaxAckPending: MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s: %w", p.name, err)
	}
	o.mu.Lock()
	if p.delivered == 0 {
		p.delivered = max(cons.CachedInfo().Delivered.Stream, 1)
	}
	p.cons = cons
	o.mu.Unlock()
	cc, err := cons.Consume(p.dispatch,
		jetstream.PullMaxMessages(500),
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				// The client re-pulls by itself; see pullHeartbeat.
				o.log.Debug("outbox consumer missed heartbeats; pulling again", "connector", p.token, "error", err)
				return
			}
			o.log.Warn("outbox consumer trouble", "connector", p.token, "error", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("consuming %s: %w", p.name, err)
	}
	return cc, nil
}

// backlogEvery paces the owner's report of a partition's backlog.
const backlogEvery = 10 * time.Second

// reportBacklog tells the observer, while the partition is owned, how many
// of its commands wait and how old the oldest is: one consumer info and
// one direct get of the connector's first command per report.
func (p *partition) reportBacklog(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	o := p.o
	t := time.NewTicker(backlogEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, ok := o.opts.Lookup(p.token); !ok {
			// Not a connector of this instance: its commands fail, and a
			// gauge per made-up connector name would be a series each.
			continue
		}
		o.mu.Lock()
		cons := p.cons
		o.mu.Unlock()
		if cons == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var waiting int
		info, err := cons.Info(rctx)
		if err == nil {
			waiting = int(info.NumPending) + info.NumAckPending
		}
		var oldest time.Duration
		if first, gerr := o.opts.Handles.Commands.GetMsg(rctx, 1, jetstream.WithGetMsgSubject(p.filter)); gerr == nil {
			oldest = max(time.Since(first.Time), 0)
		}
		cancel()
		if err != nil {
			continue
		}
		o.mu.Lock()
		for _, st := range p.parked {
			waiting += st.pending
		}
		o.mu.Unlock()
		o.obs.Backlog(p.token, waiting, oldest)
	}
}

// reclaim makes the commands the previous owner held come back at once:
// when the consumer still counts deliveries nobody settled (the previous
// owner died, or handed them back moments ago), it is deleted, and created
// again it delivers every command left in the stream from the first, in
// order. Otherwise they would come back only after the ack wait. Nothing is
// lost: a work queue keeps every command until it is acknowledged, and a
// late ack of the previous owner then fails, so its command is delivered
// again and its marker makes that a repeat of the outcome.
func (p *partition) reclaim(ctx context.Context) {
	o := p.o
	cons, err := o.opts.Handles.Commands.Consumer(ctx, p.name)
	if err != nil {
		return // none yet, or NATS trouble: the create below says which
	}
	info, err := cons.Info(ctx)
	if err != nil || info.NumAckPending == 0 {
		return
	}
	if err := o.opts.Handles.Commands.DeleteConsumer(ctx, p.name); err != nil {
		o.log.Warn("outbox cannot reclaim commands held by the previous owner; they return after the ack wait",
			"connector", p.token, "error", err)
		return
	}
	o.log.Info("outbox reclaimed commands held by the previous owner", "connector", p.token, "held", info.NumAckPending)
}

// setUp finds the outbox bucket's stream (where parked commands are) and
// deletes the one consumer of every command that earlier versions shared
// among instances: on a work-queue stream, consumers' filters must not
// overlap, so the partitions' consumers cannot be created next to it.
// Commands it had delivered and not settled go to the partitions'
// consumers, which deliver from the start of the stream.
func (o *Outbox) setUp(ctx context.Context) bool {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(10*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := o.opts.Bus.JS().Stream(cctx, "KV_"+o.bucketName)
		if err == nil {
			o.parkStream = st
			err = o.opts.Handles.Commands.DeleteConsumer(cctx, ConsumerName)
		}
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
			if err == nil {
				o.log.Info("outbox removed the shared consumer of earlier versions", "consumer", ConsumerName)
			}
			return true
		}
		wait := bo.NextBackOff()
		o.log.Warn("outbox cannot set up its consumers; retrying", "error", err, "retry_in", wait)
		if !kit.Sleep(ctx, wait) {
			return false
		}
	}
}

func (o *Outbox) ownedLocked() int {
	n := 0
	for _, p := range o.parts {
		if p.owned {
			n++
		}
	}
	return n
}

// Owned lists the connectors (subject tokens) whose replies this instance
// sends now.
func (o *Outbox) Owned() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ts []string
	for t, p := range o.parts {
		if p.owned {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	return ts
}

// isMember reports whether an instance is among the region's live outbox
// instances, as far as this one knows (true when it knows none).
func (o *Outbox) isMember(instance string) bool {
	if o.assign == nil {
		return true
	}
	o.assign.mu.Lock()
	defer o.assign.mu.Unlock()
	_, ok := o.assign.members[instance]
	return ok
}

// Members lists the region's outbox instances as this one sees them.
func (o *Outbox) Members() []string {
	if o.assign == nil {
		return nil
	}
	return o.assign.instances()
}

// holds reports whether the partition holds the command at seq in memory.
func (p *partition) holds(seq uint64) bool {
	p.o.mu.Lock()
	defer p.o.mu.Unlock()
	_, ok := p.items[seq]
	return ok
}

func (p *partition) isVerified(conv string) bool {
	p.o.mu.Lock()
	defer p.o.mu.Unlock()
	_, ok := p.verified[conv]
	return ok
}

func (p *partition) setVerified(conv string) {
	p.o.mu.Lock()
	defer p.o.mu.Unlock()
	if p.verified != nil {
		p.verified[conv] = struct{}{}
	}
}

func (p *partition) unverify(conv string) {
	p.o.mu.Lock()
	defer p.o.mu.Unlock()
	delete(p.verified, conv)
}
