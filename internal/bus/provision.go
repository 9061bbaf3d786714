package bus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// provisionAttemptTimeout bounds one JetStream API call of Provision.
	provisionAttemptTimeout = 5 * time.Second
	// provisionRetryFor bounds how long Provision retries transient errors
	// (no meta leader yet, server unreachable) for one stream or bucket.
	provisionRetryFor = 20 * time.Second
	// minLimitMarkerTTL is the server's lower bound for delete-marker TTLs.
	minLimitMarkerTTL = time.Second
)

var regionRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)

// Region holds the handles of one region's JetStream resources, as
// provisioned by [Bus.Provision].
type Region struct {
	Name string

	Events    jetstream.Stream // PARLEY_EVT_<R>: canonical events, limits retention
	Commands  jetstream.Stream // PARLEY_CMD_<R>: reply commands, the outbox work queue
	DLQ       jetstream.Stream // PARLEY_DLQ_<R>: dead-lettered reply commands
	MediaJobs jetstream.Stream // PARLEY_MEDIA_<R>: media download jobs, work queue

	Directory jetstream.KeyValue // parley_directory_<r>: conversation directory
	Leases    jetstream.KeyValue // parley_leases_<r>: single-owner leases (bucket TTL)
	Cursors   jetstream.KeyValue // parley_cursors_<r>: poll offsets and the like
	Outbox    jetstream.KeyValue // parley_outbox_<r>: sent-markers of the outbox (7-day TTL)
	Ledger    jetstream.KeyValue // parley_ledger_<r>: every platform message id sent (LedgerTTL)

	Media jetstream.ObjectStore // parley_media_<r>: stored attachments (30-day TTL)
}

// Provision creates or updates every stream, bucket and object store of a
// region and returns their handles. It never deletes anything. An existing
// stream whose configuration cannot be updated to the wanted one (say, a
// retention policy change) is an error naming the stream: an operator must
// look, Parley will not recreate it. Transient errors (a cluster without meta
// leader yet, a timeout) are retried for a bounded time.
func (b *Bus) Provision(ctx context.Context, region string) (*Region, error) {
	if !regionRe.MatchString(region) {
		return nil, fmt.Errorf("provisioning region %q: region must match %s", region, regionRe)
	}
	o := b.opts
	subj := b.subjects
	r := &Region{Name: region}

	streams := []struct {
		dst *jetstream.Stream
		cfg jetstream.StreamConfig
	}{
		{&r.Events, jetstream.StreamConfig{
			Name:        StreamName(StreamEvents, region),
			Description: "Parley canonical events of region " + region,
			Subjects:    []string{subj.Events(region)},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      o.EventMaxAge,
			Duplicates:  min(o.DedupeWindow, o.EventMaxAge),
			Replicas:    o.Replicas,
			Discard:     jetstream.DiscardOld,
		}},
		{&r.Commands, jetstream.StreamConfig{
			Name:        StreamName(StreamCommands, region),
			Description: "Parley reply commands (outbox) of region " + region,
			Subjects:    []string{subj.Commands(region)},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      CommandMaxAge,
			Duplicates:  min(o.DedupeWindow, CommandMaxAge),
			Replicas:    o.Replicas,
			Discard:     jetstream.DiscardNew,
		}},
		{&r.DLQ, jetstream.StreamConfig{
			Name:        StreamName(StreamDLQ, region),
			Description: "Parley dead-lettered reply commands of region " + region,
			Subjects:    []string{subj.DLQs(region)},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      o.DLQMaxAge,
			Duplicates:  min(o.DedupeWindow, o.DLQMaxAge),
			Replicas:    o.Replicas,
			Discard:     jetstream.DiscardOld,
		}},
		{&r.MediaJobs, jetstream.StreamConfig{
			Name:        StreamName(StreamMedia, region),
			Description: "Parley media download jobs of region " + region,
			Subjects:    []string{subj.MediaJobs(region)},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      MediaJobMaxAge,
			Duplicates:  min(o.DedupeWindow, MediaJobMaxAge),
			Replicas:    o.Replicas,
			Discard:     jetstream.DiscardOld,
		}},
	}
	for _, s := range streams {
		st, err := retryTransient(ctx, func(ctx context.Context) (jetstream.Stream, error) {
			return b.js.CreateOrUpdateStream(ctx, s.cfg)
		})
		if err != nil {
			return nil, fmt.Errorf("provisioning stream %s: %w", s.cfg.Name, err)
		}
		*s.dst = st
	}

	buckets := []struct {
		dst *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&r.Directory, jetstream.KeyValueConfig{
			Bucket:      BucketName(BucketDirectory, region),
			Description: "Parley conversation directory of region " + region,
			History:     1,
		}},
		{&r.Leases, jetstream.KeyValueConfig{
			Bucket:      BucketName(BucketLeases, region),
			Description: "Parley single-owner leases of region " + region,
			History:     1,
			TTL:         o.LeaseTTL,
			// Expiry leaves a marker, so standbys watching a key learn at once
			// that its holder stopped renewing.
			LimitMarkerTTL: max(o.LeaseTTL, minLimitMarkerTTL),
		}},
		{&r.Cursors, jetstream.KeyValueConfig{
			Bucket:      BucketName(BucketCursors, region),
			Description: "Parley poll cursors of region " + region,
			History:     1,
		}},
		{&r.Outbox, jetstream.KeyValueConfig{
			Bucket:      BucketName(BucketOutbox, region),
			Description: "Parley outbox sent-markers of region " + region,
			History:     1,
			TTL:         OutboxMarkerTTL,
		}},
		{&r.Ledger, jetstream.KeyValueConfig{
			Bucket:      BucketName(BucketLedger, region),
			Description: "Parley reply ledger (platform message ids sent) of region " + region,
			History:     1,
			TTL:         o.LedgerTTL,
		}},
	}
	for _, kv := range buckets {
		kv.cfg.Storage = jetstream.FileStorage
		kv.cfg.Replicas = o.Replicas
		h, err := retryTransient(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
			return b.js.CreateOrUpdateKeyValue(ctx, kv.cfg)
		})
		if err != nil {
			return nil, fmt.Errorf("provisioning bucket %s: %w", kv.cfg.Bucket, err)
		}
		*kv.dst = h
	}

	objCfg := jetstream.ObjectStoreConfig{
		Bucket:      BucketName(BucketMedia, region),
		Description: "Parley media of region " + region,
		TTL:         MediaTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	}
	media, err := retryTransient(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return b.js.CreateOrUpdateObjectStore(ctx, objCfg)
	})
	if err != nil {
		return nil, fmt.Errorf("provisioning object store %s: %w", objCfg.Bucket, err)
	}
	r.Media = media

	b.log.Info("region provisioned", "region", region, "replicas", o.Replicas)
	return r, nil
}

// retryTransient calls f until it succeeds, fails permanently, ctx ends or
// provisionRetryFor passes. Each call gets its own bounded context.
func retryTransient[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(time.Second),
		backoff.WithMaxElapsedTime(provisionRetryFor),
	)
	return backoff.RetryWithData(func() (T, error) {
		actx, cancel := context.WithTimeout(ctx, provisionAttemptTimeout)
		defer cancel()
		v, err := f(actx)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil || !provisionTransient(err) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithContext(bo, ctx))
}

// provisionTransient tells errors worth retrying (the cluster is forming or
// briefly unreachable, or another instance created the same stream at the
// same moment) from those an operator must fix.
func provisionTransient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return false
		}
		return true
	}
	return false
}
