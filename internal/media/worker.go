package media

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/normalize"
)

// ConsumerName is the durable consumer every instance shares on a region's
// media work queue, so each job goes to one worker at a time.
const ConsumerName = "media"

// Defaults of Options.
const (
	DefaultMaxAttempts   = 8
	DefaultRetryBase     = 2 * time.Second
	DefaultMaxRetryDelay = 5 * time.Minute
	DefaultConcurrency   = 4
	DefaultAckWait       = 30 * time.Second
)

// Object metadata keys.
const (
	metaSHA256   = "sha256"
	metaFilename = "filename"
)

// Options configure a Worker for one region.
type Options struct {
	Bus     *bus.Bus
	Handles *bus.Region
	Region  string
	// Lookup finds the media fetcher of a connector id; false when this
	// instance does not serve that connector or it fetches no media (the
	// job is then retried, and fails after MaxAttempts).
	Lookup  func(connectorID string) (connectors.MediaFetcher, bool)
	Metrics *metrics.Metrics // nil records nothing
	Logger  *slog.Logger     // already scoped (component, region); nil discards

	// MaxAttempts is how many deliveries a job gets before a transient
	// failure becomes media.failed (default 8).
	MaxAttempts int
	// RetryBase is the first retry delay; each attempt doubles it, up to
	// MaxRetryDelay (defaults 2s and 5m). A platform's retry-after wins.
	RetryBase     time.Duration
	MaxRetryDelay time.Duration
	// Concurrency bounds parallel downloads (default 4).
	Concurrency int
	// AckWait is the consumer's ack wait (default 30s); a long download
	// sends InProgress every AckWait/4 so it is not redelivered meanwhile,
	// even when a heartbeat or two is late.
	AckWait time.Duration
	Now     func() time.Time // nil is time.Now
}

// Worker consumes one region's media jobs.
type Worker struct {
	o   Options
	log *slog.Logger
}

// NewWorker checks opts and returns a worker; it does no I/O until Run.
func NewWorker(o Options) (*Worker, error) {
	switch {
	case o.Bus == nil:
		return nil, errors.New("media worker: bus required")
	case o.Handles == nil || o.Handles.MediaJobs == nil || o.Handles.Media == nil:
		return nil, errors.New("media worker: region handles required")
	case o.Lookup == nil:
		return nil, errors.New("media worker: connector lookup required")
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultRetryBase
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Region == "" && o.Handles != nil {
		o.Region = o.Handles.Name
	}
	return &Worker{o: o, log: o.Logger}, nil
}

// Run consumes jobs until ctx ends, then waits for the downloads in flight
// (they are cancelled with ctx and their jobs handed back to the queue).
// NATS trouble is retried inside; Run returns nil when ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, w.o.Concurrency)
	pause := newPacer()
	for ctx.Err() == nil {
		err := w.consume(ctx, slots, &wg)
		if ctx.Err() != nil {
			break
		}
		w.log.Warn("media consumer interrupted; retrying", "error", err)
		if !pause.wait(ctx) {
			break
		}
	}
	return nil
}

// consume runs one consumer subscription until it fails or ctx ends.
func (w *Worker) consume(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := w.o.Handles.MediaJobs.CreateOrUpdateConsumer(cctx, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "Parley media download jobs",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       w.o.AckWait,
		// Attempts are counted by the worker from NumDelivered, so the
		// server must not drop a job on its own.
		MaxDeliver: -1,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("creating media consumer: %w", err)
	}
	// Short pull expiry and heartbeats: a pull request that goes missing
	// under load otherwise stalls jobs until the 30s default expiry.
	it, err := cons.Messages(jetstream.PullMaxMessages(w.o.Concurrency), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return fmt.Errorf("subscribing to media jobs: %w", err)
	}
	defer it.Stop()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("receiving media jobs: %w", err)
			}
			// Missed heartbeats and the like: the iterator resumes.
			w.log.Debug("media consumer hiccup", "error", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			w.handle(ctx, msg)
		}()
	}
}

// outcome is what became of one delivery of a job.
type outcome struct {
	stored *stored
	failed string        // media.failed with this reason
	retry  time.Duration // NakWithDelay
	err    error         // why it is retried
}

type stored struct {
	mime, sha string
	size      int64
}

// handle processes one delivery and settles it (ack, nak or term).
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	var job Job
	if err := json.Unmarshal(msg.Data(), &job); err != nil || !normalize.ValidID("m_", string(job.MediaID)) ||
		!normalize.ValidID("c_", string(job.ConversationID)) || job.Connector == "" || job.Platform == "" {
		// No retry can make it readable; keep the worker going.
		w.log.Error("dropping malformed media job", "subject", msg.Subject(), "error", err)
		_ = msg.TermWithReason("malformed media job")
		return
	}
	log := w.log.With("media_id", job.MediaID, "connector", job.Connector, "event_id", job.EventID)
	attempt := 1
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}

	out := w.process(ctx, msg, &job, attempt)
	if ctx.Err() != nil && out.stored == nil && out.failed == "" {
		// Shutting down: hand the job back for another instance now.
		_ = msg.Nak()
		return
	}
	if out.stored != nil || out.failed != "" {
		if err := w.announce(ctx, &job, out); err != nil {
			log.Warn("announcing media outcome", "attempt", attempt, "error", err)
			_ = msg.NakWithDelay(w.delay(attempt, 0))
			return
		}
		if err := msg.Ack(); err != nil {
			// The job comes back; the object exists, so it is announced
			// again under the same event id and dropped as a duplicate.
			log.Warn("acknowledging media job", "error", err)
		}
		return
	}
	log.Info("media fetch failed; retrying", "attempt", attempt, "retry_after", out.retry, "error", out.err)
	_ = msg.NakWithDelay(out.retry)
}

// process fetches and stores one job's bytes, or decides it cannot be done.
func (w *Worker) process(ctx context.Context, msg jetstream.Msg, job *Job, attempt int) outcome {
	if job.Unavailable != "" {
		return outcome{failed: job.Unavailable}
	}
	store := w.o.Handles.Media
	name := string(job.MediaID)

	info, err := store.GetInfo(ctx, name)
	switch {
	case err == nil && !info.Deleted:
		return outcome{stored: storedFromInfo(info)}
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return w.transient(job, attempt, 0, fmt.Errorf("looking up stored media: %w", err), false)
	}

	fetcher, ok := w.o.Lookup(job.Connector)
	if !ok {
		return w.transient(job, attempt, 0, fmt.Errorf("connector %s fetches no media on this instance", job.Connector), true)
	}

	// Keep the job ours while the download runs longer than AckWait.
	stop := w.heartbeat(msg)
	defer stop()

	rc, mi, err := fetcher.FetchMedia(ctx, job.FetchRef)
	if err != nil {
		return w.fetchFailure(job, attempt, err)
	}
	defer rc.Close()

	br := bufio.NewReaderSize(rc, 512)
	mime := firstNonEmpty(mi.MimeType, job.MimeType)
	if mime == "" {
		// Peek never consumes: the whole body still goes to the store.
		head, _ := br.Peek(512)
		mime = http.DetectContentType(head)
	}
	src := &hashingReader{r: br, h: sha256.New()}
	meta := ObjectMeta(job.MediaID, mime, firstNonEmpty(mi.Filename, job.Filename))
	meta.Description = "attachment " + strconv.Itoa(job.AttachmentIndex) + " of event " + string(job.EventID)
	if _, err := store.Put(ctx, meta, src); err != nil {
		if src.err != nil {
			// The platform's body broke off: classify it like a fetch error.
			return w.fetchFailure(job, attempt, src.err)
		}
		return w.transient(job, attempt, 0, fmt.Errorf("storing media: %w", err), false)
	}
	sum := hex.EncodeToString(src.h.Sum(nil))
	meta.Metadata[metaSHA256] = sum
	if err := store.UpdateMeta(ctx, name, meta); err != nil {
		// The bytes are stored; the object's own digest still gives the
		// hash when the job is announced again.
		w.log.Warn("recording media hash", "media_id", job.MediaID, "error", err)
	}
	return outcome{stored: &stored{mime: mime, sha: sum, size: src.n}}
}

// fetchFailure classifies a connector's error.
func (w *Worker) fetchFailure(job *Job, attempt int, err error) outcome {
	c := connectors.Classify(err)
	if c.Class == connectors.ClassPermanent {
		reason := err.Error()
		if c.Err != nil {
			reason = c.Err.Error()
		}
		return outcome{failed: reason}
	}
	var after time.Duration
	if c.Class == connectors.ClassRetryAfter {
		after = c.RetryAfter
	}
	return w.transient(job, attempt, after, fmt.Errorf("fetching media: %w", err), true)
}

// transient retries a failure, or gives up after MaxAttempts when the
// failure is the platform's (NATS trouble is retried for as long as it lasts:
// the job is not lost, and announcing failure would need NATS anyway).
func (w *Worker) transient(job *Job, attempt int, after time.Duration, err error, platform bool) outcome {
	if platform && attempt >= w.o.MaxAttempts {
		return outcome{failed: fmt.Sprintf("gave up after %d attempts: %v", attempt, err)}
	}
	return outcome{retry: w.delay(attempt, after), err: err}
}

// delay is the wait before delivery attempt+1.
func (w *Worker) delay(attempt int, after time.Duration) time.Duration {
	if after > 0 {
		return after
	}
	d := w.o.RetryBase
	for i := 1; i < attempt && d < w.o.MaxRetryDelay; i++ {
		d *= 2
	}
	return min(d, w.o.MaxRetryDelay)
}

// heartbeat sends InProgress every AckWait/4 until stopped.
func (w *Worker) heartbeat(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(max(w.o.AckWait/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// announce publishes media.stored or media.failed for job.
func (w *Worker) announce(ctx context.Context, job *Job, out outcome) error {
	now := w.o.Now().UTC()
	conv := job.Conversation
	if conv == nil || conv.ID != job.ConversationID {
		conv = &normalize.Conversation{ID: job.ConversationID}
	}
	status := &normalize.MediaStatus{
		ID: job.MediaID, AttachmentIndex: job.AttachmentIndex, MessageID: job.MessageID,
		MimeType: job.MimeType, Size: job.Size,
	}
	typ, id := normalize.TypeMediaFailed, FailedEventID(job.MediaID)
	if out.stored != nil {
		typ, id = normalize.TypeMediaStored, StoredEventID(job.MediaID)
		status.MimeType, status.Size, status.SHA256 = out.stored.mime, out.stored.size, out.stored.sha
	} else {
		status.Error = out.failed
	}
	ev := &normalize.Event{
		ID:      id,
		Source:  normalize.Source(w.o.Region, job.Platform, job.Connector),
		Type:    typ,
		Subject: job.ConversationID,
		Time:    now,
		Data: normalize.Data{
			Region: w.o.Region, Platform: job.Platform, Connector: job.Connector,
			Conversation: conv, Sender: job.Sender, Media: status, ReceivedAt: now,
		},
	}
	data, err := normalize.Encode(ev)
	if err != nil {
		return fmt.Errorf("encoding media event: %w", err)
	}
	res, err := w.o.Bus.Publish(ctx, bus.Message{
		Subject: w.o.Bus.Subjects().Event(w.o.Region, job.Platform, job.Connector, string(job.ConversationID), typ.Kind()),
		MsgID:   string(ev.ID),
		Data:    data,
		Header:  nats.Header{"Content-Type": []string{normalize.ContentType}},
	})
	if err != nil {
		return fmt.Errorf("publishing %s: %w", typ, err)
	}
	if len(res) == 1 && res[0].Duplicate {
		return nil
	}
	if out.stored != nil {
		w.o.Metrics.MediaStored(w.o.Region, job.Connector)
		w.log.Debug("media stored", "media_id", job.MediaID, "size", out.stored.size)
	} else {
		w.o.Metrics.MediaFailed(w.o.Region, job.Connector)
		w.log.Info("media failed", "media_id", job.MediaID, "connector", job.Connector, "reason", out.failed)
	}
	return nil
}

// storedFromInfo describes an object stored by an earlier delivery.
func storedFromInfo(info *jetstream.ObjectInfo) *stored {
	s := &stored{size: int64(info.Size), sha: info.Metadata[metaSHA256]}
	if info.Headers != nil {
		s.mime = info.Headers.Get("Content-Type")
	}
	if s.sha == "" {
		s.sha = digestHex(info.Digest)
	}
	return s
}

// digestHex turns the object store's "SHA-256=<base64url>" digest into hex.
func digestHex(d string) string {
	raw, err := jetstream.DecodeObjectDigest(d)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(raw)
}

// hashingReader hashes and counts what passes through, and remembers the
// source's own error so a broken download is told from a NATS failure.
type hashingReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	err error
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if err != nil && err != io.EOF {
		h.err = err
	}
	return n, err
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// pacer spaces out reconnect attempts of the consumer loop.
type pacer struct{ d time.Duration }

func newPacer() *pacer { return &pacer{d: 100 * time.Millisecond} }

func (p *pacer) wait(ctx context.Context) bool {
	t := time.NewTimer(p.d)
	defer t.Stop()
	p.d = min(p.d*2, 5*time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
