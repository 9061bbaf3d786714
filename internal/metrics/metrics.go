// Package metrics holds Parley's Prometheus collectors in a registry of its
// own (never the global default one, so two gateways in one test process do
// not collide) and serves them for GET /metrics.
//
// Other packages record through plain methods (strings, ints, durations) and
// never import Prometheus. Every method is safe on a nil *Metrics, which
// records nothing: tests and tools pass nil instead of building a registry.
//
// Label values are bounded by configuration (regions, connector ids,
// platforms), by fixed vocabularies (event types, error codes, classes,
// states) or by small sets chosen by the caller (ignore reasons, HTTP status
// codes). Never pass conversation ids, message text or error messages as
// labels: they would grow the series without bound and could leak data.
package metrics

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// Metrics is Parley's set of collectors and the registry that serves them.
type Metrics struct {
	reg *prometheus.Registry

	eventsPublished *prometheus.CounterVec
	eventsDuplicate *prometheus.CounterVec
	publishFailures *prometheus.CounterVec
	webhookRequests *prometheus.CounterVec
	inboundDead     *prometheus.CounterVec

	outboxSent         *prometheus.CounterVec
	outboxParts        *prometheus.CounterVec
	outboxFailed       *prometheus.CounterVec
	outboxRetries      *prometheus.CounterVec
	outboxDeadLettered *prometheus.CounterVec
	outboxSendSeconds  *prometheus.HistogramVec
	outboxOwned        *prometheus.GaugeVec
	outboxSends        *prometheus.CounterVec
	outboxBacklog      *prometheus.GaugeVec
	outboxOldest       *prometheus.GaugeVec

	mediaStored *prometheus.CounterVec
	mediaFailed *prometheus.CounterVec

	connectorState *prometheus.GaugeVec
	stateMu        sync.Mutex
	lastState      map[string]string // connector id → the state whose gauge is 1
}

// New builds the collectors, Go runtime and process collectors included, in
// a fresh registry.
func New() *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),

		eventsPublished: counter("parley_events_published_total",
			"Canonical events stored in JetStream.", "region", "platform", "connector", "type"),
		eventsDuplicate: counter("parley_events_duplicate_total",
			"Canonical events JetStream already held (platform redeliveries).", "region", "platform", "connector", "type"),
		publishFailures: counter("parley_publish_failures_total",
			"Publish calls that could not store their events (the platform was not acknowledged).", "region", "connector"),
		webhookRequests: counter("parley_webhook_requests_total",
			"Webhook requests by connector and HTTP status code.", "connector", "code"),
		inboundDead: counter("parley_inbound_dead_lettered_total",
			"Platform updates acknowledged but kept on the inbound dead-letter subject instead of stored as events, by reason (refused, unmappable).",
			"region", "connector", "reason"),

		outboxSent: counter("parley_outbox_sent_total",
			"Reply commands delivered (reply.sent).", "region", "connector"),
		outboxParts: counter("parley_outbox_parts_total",
			"Platform messages sent for delivered replies.", "region", "connector"),
		outboxFailed: counter("parley_outbox_failed_total",
			"Reply commands that ended in reply.failed, by error code.", "region", "connector", "code"),
		outboxRetries: counter("parley_outbox_retries_total",
			"Delivery attempts scheduled again, by failure class.", "region", "connector", "class"),
		outboxDeadLettered: counter("parley_outbox_dead_lettered_total",
			"Reply commands copied to the dead-letter stream.", "region", "connector"),
		outboxSendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_outbox_send_seconds",
			Help:    "Time to deliver one reply command, all its parts, from the first attempt of this delivery.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"region", "connector"}),

		outboxOwned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_outbox_partitions_owned",
			Help: "Partitions of the region's reply commands this instance owns (sends for).",
		}, []string{"region"}),

		outboxSends: counter("parley_outbox_sends_total",
			"Platform send calls by account and outcome (sent, rate_limited, retry, failed).", "region", "connector", "account", "outcome"),
		outboxBacklog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_outbox_backlog",
			Help: "Reply commands of a connector waiting to be sent (in the stream, held or parked), reported by the instance owning the connector; 0 elsewhere.",
		}, []string{"region", "connector"}),
		outboxOldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_outbox_oldest_seconds",
			Help: "Age of the oldest reply command of a connector still in the stream, reported by its owner; 0 elsewhere.",
		}, []string{"region", "connector"}),

		mediaStored: counter("parley_media_stored_total",
			"Inbound attachments stored in the object store (media.stored).", "region", "connector"),
		mediaFailed: counter("parley_media_failed_total",
			"Inbound attachments that could not be stored (media.failed).", "region", "connector"),

		connectorState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_connector_state",
			Help: "1 for each connector's current state, 0 for the states it left.",
		}, []string{"connector", "state"}),
		lastState: map[string]string{},
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.eventsPublished, m.eventsDuplicate, m.publishFailures, m.webhookRequests, m.inboundDead,
		m.outboxSent, m.outboxParts, m.outboxFailed, m.outboxRetries, m.outboxDeadLettered, m.outboxSendSeconds,
		m.outboxOwned, m.outboxSends, m.outboxBacklog, m.outboxOldest,
		m.mediaStored, m.mediaFailed, m.connectorState,
	)
	return m
}

// Handler serves the registry in the Prometheus exposition format. A nil
// *Metrics serves an empty page.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry returns the registry, for tests and for registering collectors
// that only one component knows.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// EventPublished counts one event stored for the first time.
func (m *Metrics) EventPublished(region, platform, connector string, typ normalize.Type) {
	if m == nil {
		return
	}
	m.eventsPublished.WithLabelValues(region, platform, connector, string(typ)).Inc()
}

// EventDuplicate counts one event that JetStream already held.
func (m *Metrics) EventDuplicate(region, platform, connector string, typ normalize.Type) {
	if m == nil {
		return
	}
	m.eventsDuplicate.WithLabelValues(region, platform, connector, string(typ)).Inc()
}

// PublishFailed counts one Publish call that did not store its events.
func (m *Metrics) PublishFailed(region, connector string) {
	if m == nil {
		return
	}
	m.publishFailures.WithLabelValues(region, connector).Inc()
}

// WebhookAnswered counts one webhook request answered with HTTP status code;
// its signature fits the HTTP server's OnWebhook hook.
func (m *Metrics) WebhookAnswered(connector string, code int) {
	if m == nil {
		return
	}
	m.webhookRequests.WithLabelValues(connector, strconv.Itoa(code)).Inc()
}

// Total sums every series of the metric family name (0 when it has none):
// what a test or the load command reads of a counter.
func (m *Metrics) Total(name string) float64 {
	if m == nil {
		return 0
	}
	families, err := m.reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			switch {
			case s.Counter != nil:
				sum += s.Counter.GetValue()
			case s.Gauge != nil:
				sum += s.Gauge.GetValue()
			}
		}
	}
	return sum
}

// InboundDeadLettered counts one platform update kept on the inbound
// dead-letter subject; reason is connectors.RejectRefused or
// RejectUnmappable.
func (m *Metrics) InboundDeadLettered(region, connector, reason string) {
	if m == nil {
		return
	}
	m.inboundDead.WithLabelValues(region, connector, reason).Inc()
}

// RegisterInbound exports a connector's inbound counters as
// parley_inbound_{received,ignored,failed}_total{connector}, read when
// scraped. Registering the same connector twice is an error.
func (m *Metrics) RegisterInbound(connector string, stats func() connectors.InboundStats) error {
	if m == nil {
		return nil
	}
	labels := prometheus.Labels{"connector": connector}
	for _, c := range []struct {
		name, help string
		value      func(connectors.InboundStats) uint64
	}{
		{"parley_inbound_received_total", "Platform updates a connector received.", func(s connectors.InboundStats) uint64 { return s.Received }},
		{"parley_inbound_ignored_total", "Platform updates of kinds Parley does not map (acknowledged, nothing stored).", func(s connectors.InboundStats) uint64 { return s.Ignored }},
		{"parley_inbound_failed_total", "Platform updates refused as malformed (400) or dead-lettered as refused or unmappable.", func(s connectors.InboundStats) uint64 { return s.Failed }},
	} {
		value := c.value
		f := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help, ConstLabels: labels},
			func() float64 { return float64(value(stats())) })
		if err := m.reg.Register(f); err != nil {
			return fmt.Errorf("registering %s for %s: %w", c.name, connector, err)
		}
	}
	return nil
}

// OutboxSent counts one delivered reply of parts platform messages that took d.
func (m *Metrics) OutboxSent(region, connector string, parts int, d time.Duration) {
	if m == nil {
		return
	}
	m.outboxSent.WithLabelValues(region, connector).Inc()
	m.outboxParts.WithLabelValues(region, connector).Add(float64(max(parts, 0)))
	m.outboxSendSeconds.WithLabelValues(region, connector).Observe(d.Seconds())
}

// OutboxFailed counts one reply that ended in reply.failed with code.
func (m *Metrics) OutboxFailed(region, connector string, code normalize.ErrorCode) {
	if m == nil {
		return
	}
	m.outboxFailed.WithLabelValues(region, connector, string(code)).Inc()
}

// OutboxRetried counts one attempt scheduled again after a failure of class.
func (m *Metrics) OutboxRetried(region, connector string, class connectors.Class) {
	if m == nil {
		return
	}
	m.outboxRetries.WithLabelValues(region, connector, class.String()).Inc()
}

// OutboxDeadLettered counts one reply copied to the dead-letter stream.
func (m *Metrics) OutboxDeadLettered(region, connector string) {
	if m == nil {
		return
	}
	m.outboxDeadLettered.WithLabelValues(region, connector).Inc()
}

// MediaStored counts one attachment stored.
func (m *Metrics) MediaStored(region, connector string) {
	if m == nil {
		return
	}
	m.mediaStored.WithLabelValues(region, connector).Inc()
}

// MediaFailed counts one attachment that ended in media.failed.
func (m *Metrics) MediaFailed(region, connector string) {
	if m == nil {
		return
	}
	m.mediaFailed.WithLabelValues(region, connector).Inc()
}

// ConnectorState records a connector's current state: its gauge for state
// becomes 1 and the one for its previous state 0. Keeping the old series at
// 0 rather than deleting it lets dashboards graph transitions.
func (m *Metrics) ConnectorState(connector string, state normalize.State) {
	if m == nil {
		return
	}
	m.stateMu.Lock()
	defer m.stateMu.Unlock()
	if prev, ok := m.lastState[connector]; ok && prev != string(state) {
		m.connectorState.WithLabelValues(connector, prev).Set(0)
	}
	m.lastState[connector] = string(state)
	m.connectorState.WithLabelValues(connector, string(state)).Set(1)
}

// OutboxObserver returns the outbox's observer for one region.
func (m *Metrics) OutboxObserver(region string) *OutboxObserver {
	return &OutboxObserver{m: m, region: region}
}

// OutboxObserver records the outbox's outcomes of one region. It satisfies
// the Observer interface that the outbox package declares. A nil
// *OutboxObserver, or one over a nil *Metrics, records nothing.
type OutboxObserver struct {
	m      *Metrics
	region string
}

// Sent records one delivered reply.
func (o *OutboxObserver) Sent(connector string, parts int, d time.Duration) {
	if o == nil {
		return
	}
	o.m.OutboxSent(o.region, connector, parts, d)
}

// Failed records one reply that ended in reply.failed.
func (o *OutboxObserver) Failed(connector string, code normalize.ErrorCode) {
	if o == nil {
		return
	}
	o.m.OutboxFailed(o.region, connector, code)
}

// Retried records one attempt scheduled again.
func (o *OutboxObserver) Retried(connector string, class connectors.Class) {
	if o == nil {
		return
	}
	o.m.OutboxRetried(o.region, connector, class)
}

// DeadLettered records one dead-lettered reply.
func (o *OutboxObserver) DeadLettered(connector string) {
	if o == nil {
		return
	}
	o.m.OutboxDeadLettered(o.region, connector)
}

// Send records one platform send call of an account.
func (o *OutboxObserver) Send(connector, account, outcome string) {
	if o == nil || o.m == nil {
		return
	}
	o.m.outboxSends.WithLabelValues(o.region, connector, account, outcome).Inc()
}

// Backlog records a connector's waiting commands and the oldest's age.
func (o *OutboxObserver) Backlog(connector string, waiting int, oldest time.Duration) {
	if o == nil || o.m == nil {
		return
	}
	o.m.outboxBacklog.WithLabelValues(o.region, connector).Set(float64(waiting))
	o.m.outboxOldest.WithLabelValues(o.region, connector).Set(oldest.Seconds())
}

// Owned records how many partitions this instance owns.
func (o *OutboxObserver) Owned(n int) {
	if o == nil || o.m == nil {
		return
	}
	o.m.outboxOwned.WithLabelValues(o.region).Set(float64(n))
}
