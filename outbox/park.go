package outbox

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
)

// Parking keeps one conversation's backlog from taking the capacity the
// others need. A command delivered by the consumer counts against its
// MaxAckPending until it is settled, and a nak'd one as well, so a deep
// backlog held or handed back in the stream would fill the consumer and
// stall every other conversation of the connector. Past maxHeld commands
// of a conversation, the owner moves the conversation's later commands,
// in order, to the outbox bucket (key "park.<connector>.<conv>.<stream
// sequence>") and acknowledges them on the stream; the conversation's
// worker loads them back as it drains. Once a conversation has parked
// commands, every later one is parked behind them until they are all
// loaded, so the order holds; the key keeps each command's stream
// sequence, which stays its place in the conversation. A new owner finds
// the parked conversations with one look at the bucket.

// Headers of a parked command.
const (
	headerParkSubject = "Parley-Park-Subject" // the command's subject
	headerParkMsgID   = "Parley-Park-Msg-Id"  // its Nats-Msg-Id
	headerParkStored  = "Parley-Park-Stored"  // when the stream stored it (RFC 3339, ns)
)

const (
	parkKeyPrefix = "park."
	// parkBatch bounds the commands parked in one pipelined publish.
	parkBatch = 256
)

// parkState is one conversation's parked commands, as the owner knows them.
type parkState struct {
	last    uint64 // the highest stream sequence parked
	pending int    // parked or being parked, not loaded back yet
	cursor  uint64 // the bucket stream's sequence to read the next one from
}

// parkSubjects is the bucket stream's subject of one parked command, or
// with seq 0 the filter of a conversation's.
func (p *partition) parkSubject(conv string, seq uint64) string {
	s := "$KV." + p.o.bucketName + "." + parkKeyPrefix + p.token + "." + conv + "."
	if seq == 0 {
		return s + "*"
	}
	return s + strconv.FormatUint(seq, 10)
}

// shouldPark decides, under o.mu, whether a command just delivered goes to
// the bucket: when its conversation already has parked commands, or holds
// maxHeld in memory, and it is later than all of them (an earlier one, a
// redelivery, always stays in memory: parking it behind later ones would
// reorder the conversation).
func (p *partition) shouldPark(key string, q *convQueue, seq uint64) bool {
	if st, ok := p.parked[key]; ok {
		return seq > st.last
	}
	return q != nil && len(q.items) >= p.o.maxHeld && seq > q.items[len(q.items)-1].seq
}

// park queues msg for parking, under o.mu.
func (p *partition) park(key string, seq uint64, msg jetstream.Msg) {
	p.countParkedLocked(key, seq)
	p.parkQ = append(p.parkQ, parkJob{key: key, seq: seq, msg: msg})
	select {
	case p.parkNotify <- struct{}{}:
	default:
	}
}

// countParkedLocked counts one more parked command of a conversation, at
// stream sequence seq.
func (p *partition) countParkedLocked(conv string, seq uint64) {
	st, ok := p.parked[conv]
	if !ok {
		st = &parkState{}
		p.parked[conv] = st
	}
	st.last = max(st.last, seq)
	st.pending++
}

type parkJob struct {
	key string
	seq uint64
	msg jetstream.Msg
}

// parker writes queued commands to the bucket, in order, in pipelined
// batches, and acknowledges each on the stream once it is stored. It runs
// while the partition is owned; what it has not stored when the ownership
// ends is handed back to the stream.
func (p *partition) parker(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	o := p.o
	for {
		o.mu.Lock()
		n := min(len(p.parkQ), parkBatch)
		jobs := slices.Clone(p.parkQ[:n])
		o.mu.Unlock()
		if n == 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.parkNotify:
				continue
			}
		}
		msgs := make([]bus.Message, n)
		for i, j := range jobs {
			h := nats.Header{}
			for k, v := range j.msg.Headers() {
				h[k] = v
			}
			h.Set(headerParkMsgID, h.Get(jetstream.MsgIDHeader))
			h.Del(jetstream.MsgIDHeader)
			h.Set(headerParkSubject, j.msg.Subject())
			if md, err := j.msg.Metadata(); err == nil {
				h.Set(headerParkStored, md.Timestamp.UTC().Format(time.RFC3339Nano))
			}
			msgs[i] = bus.Message{
				Subject: p.parkSubject(j.key, j.seq),
				MsgID:   "park-" + p.token + "-" + strconv.FormatUint(j.seq, 10),
				Data:    j.msg.Data(),
				Header:  h,
			}
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		_, err := o.opts.Bus.Publish(pctx, msgs...)
		cancel()
		if err != nil {
			// Order matters more than speed here: try the same batch again.
			o.log.Warn("outbox cannot park commands; retrying", "connector", p.token, "error", err)
			if ctx.Err() != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for _, j := range jobs {
			// A lost ack redelivers the command; parking it again is
			// deduplicated, or skipped (it is not later than the park).
			_ = j.msg.Ack()
		}
		o.mu.Lock()
		p.parkQ = p.parkQ[n:]
		o.mu.Unlock()
	}
}

// handBackUnparked returns the commands still waiting to be parked to the
// stream, when the ownership ends.
func (p *partition) handBackUnparked() {
	p.o.mu.Lock()
	jobs := p.parkQ
	p.parkQ = nil
	p.o.mu.Unlock()
	for _, j := range jobs {
		_ = j.msg.NakWithDelay(handBackDelay)
	}
}

// findParked loads, when the partition is taken, which conversations have
// parked commands, so their later commands are parked behind them.
func (p *partition) findParked(ctx context.Context) error {
	o := p.o
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	prefix := "$KV." + o.bucketName + "." + parkKeyPrefix + p.token + "."
	info, err := o.parkStream.Info(fctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for subject, n := range info.State.Subjects {
		conv, seqTok, ok := strings.Cut(strings.TrimPrefix(subject, prefix), ".")
		seq, err := strconv.ParseUint(seqTok, 10, 64)
		if !ok || err != nil || n == 0 {
			continue
		}
		p.countParkedLocked(conv, seq)
	}
	for conv := range p.parked {
		p.startQueueLocked(conv)
	}
	return nil
}

// refill loads parked commands of q back into memory when it runs low.
func (p *partition) refill(ctx context.Context, q *convQueue) {
	o := p.o
	for {
		o.mu.Lock()
		st, ok := p.parked[q.key]
		room := o.maxHeld - len(q.items)
		if !ok || room < o.maxHeld/2 && len(q.items) > 0 {
			o.mu.Unlock()
			return
		}
		if st.pending == 0 {
			queued := slices.ContainsFunc(p.parkQ, func(j parkJob) bool { return j.key == q.key })
			if !queued {
				delete(p.parked, q.key) // all loaded: later commands stay in memory again
			}
			o.mu.Unlock()
			return
		}
		cursor := st.cursor
		o.mu.Unlock()

		gctx, cancel := context.WithTimeout(ctx, finishTimeout)
		raw, err := o.parkStream.GetMsg(gctx, max(cursor, 1), jetstream.WithGetMsgSubject(p.parkSubject(q.key, 0)))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// Still being parked: the parker stores it in a moment.
			o.mu.Lock()
			queued := slices.ContainsFunc(p.parkQ, func(j parkJob) bool { return j.key == q.key })
			if !queued {
				o.log.Warn("outbox lost count of a conversation's parked commands", "connector", p.token, "conversation", q.key, "expected", st.pending)
				delete(p.parked, q.key)
			}
			o.mu.Unlock()
			return
		}
		if err != nil {
			o.log.Warn("outbox cannot load parked commands; retrying", "connector", p.token, "conversation", q.key, "error", err)
			return
		}
		pm := newParkedMsg(p, raw)
		o.mu.Lock()
		st.cursor = raw.Sequence + 1
		st.pending--
		if _, held := p.items[pm.seq]; !held {
			p.insertLocked(q, &item{seq: pm.seq, queueKey: q.key, p: p, msg: pm})
		}
		o.mu.Unlock()
		if len(q.items) >= o.maxHeld {
			return
		}
	}
}

// parkedMsg is a parked command loaded back: it stands in for the stream's
// delivery, so a delivery handles it like any other. Settling it removes it
// from the bucket; handing it back keeps it in memory, in its place.
type parkedMsg struct {
	p        *partition
	parkSeq  uint64
	seq      uint64
	subject  string
	header   nats.Header
	data     []byte
	stored   time.Time
	delivery uint64
}

func newParkedMsg(p *partition, raw *jetstream.RawStreamMsg) *parkedMsg {
	h := nats.Header{}
	for k, v := range raw.Header {
		h[k] = v
	}
	pm := &parkedMsg{p: p, parkSeq: raw.Sequence, subject: h.Get(headerParkSubject), data: raw.Data, delivery: 1}
	if id := h.Get(headerParkMsgID); id != "" {
		h.Set(jetstream.MsgIDHeader, id)
	} else {
		h.Del(jetstream.MsgIDHeader)
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(headerParkStored)); err == nil {
		pm.stored = t
	}
	h.Del(headerParkMsgID)
	h.Del(headerParkSubject)
	h.Del(headerParkStored)
	pm.header = h
	if i := strings.LastIndexByte(raw.Subject, '.'); i >= 0 {
		pm.seq, _ = strconv.ParseUint(raw.Subject[i+1:], 10, 64)
	}
	return pm
}

func (m *parkedMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Stream: m.seq},
		NumDelivered: m.delivery,
		Timestamp:    m.stored,
	}, nil
}
func (m *parkedMsg) Data() []byte                        { return m.data }
func (m *parkedMsg) Headers() nats.Header                { return m.header }
func (m *parkedMsg) Subject() string                     { return m.subject }
func (m *parkedMsg) Reply() string                       { return "" }
func (m *parkedMsg) InProgress() error                   { return nil }
func (m *parkedMsg) Ack() error                          { return m.remove(context.Background()) }
func (m *parkedMsg) DoubleAck(ctx context.Context) error { return m.remove(ctx) }
func (m *parkedMsg) Term() error                         { return m.remove(context.Background()) }
func (m *parkedMsg) TermWithReason(string) error         { return m.remove(context.Background()) }
func (m *parkedMsg) Nak() error                          { return nil }
func (m *parkedMsg) NakWithDelay(time.Duration) error    { return nil }

func (m *parkedMsg) remove(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	err := m.p.o.parkStream.DeleteMsg(rctx, m.parkSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	return err
}

// requeue puts a parked command that is to be tried again back in its
// place in memory, to be offered after delay (the stream would hold a
// nak'd command that long). At the end of the ownership it stays in the
// bucket for the next owner.
func (d *delivery) requeue(delay time.Duration) {
	pm, ok := d.msg.(*parkedMsg)
	if !ok {
		return
	}
	p := pm.p
	o := p.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if p.stopping || !p.owned || p.ctx.Err() != nil {
		return
	}
	q, ok := p.convs[d.it.queueKey]
	if !ok {
		return
	}
	if delay > 0 {
		o.pacer.notBefore(d.it.queueKey, time.Now().Add(delay))
	}
	next := *pm
	next.delivery++
	p.insertLocked(q, &item{seq: pm.seq, queueKey: d.it.queueKey, p: p, msg: &next})
}
