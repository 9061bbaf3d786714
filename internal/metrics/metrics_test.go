package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/normalize"
	"github.com/parley-gateway/parley/outbox"
)

// The outbox declares the interface; the adapter must keep satisfying it.
var _ outbox.Observer = (*metrics.OutboxObserver)(nil)

// scrape returns the exposition text served by m's handler.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping metrics: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	return string(b)
}

func TestMetricsExposition(t *testing.T) {
	tests := []struct {
		name   string
		record func(m *metrics.Metrics)
		want   []string
		absent []string
	}{
		{
			name: "published and duplicate events are counted by type",
			record: func(m *metrics.Metrics) {
				m.EventPublished("eu", "telegram", "tg-eu", normalize.TypeMessageReceived)
				m.EventPublished("eu", "telegram", "tg-eu", normalize.TypeMessageReceived)
				m.EventDuplicate("eu", "telegram", "tg-eu", normalize.TypeMessageReceived)
				m.PublishFailed("eu", "tg-eu")
			},
			want: []string{
				`parley_events_published_total{connector="tg-eu",platform="telegram",region="eu",type="parley.message.received"} 2`,
				`parley_events_duplicate_total{connector="tg-eu",platform="telegram",region="eu",type="parley.message.received"} 1`,
				`parley_publish_failures_total{connector="tg-eu",region="eu"} 1`,
			},
		},
		{
			name: "webhook requests are counted by status code",
			record: func(m *metrics.Metrics) {
				m.WebhookAnswered("fb", 200)
				m.WebhookAnswered("fb", 503)
				if err := m.RegisterInbound("fb", func() connectors.InboundStats {
					return connectors.InboundStats{Received: 5, Ignored: 2, Failed: 1}
				}); err != nil {
					panic(err)
				}
			},
			want: []string{
				`parley_inbound_received_total{connector="fb"} 5`,
				`parley_inbound_ignored_total{connector="fb"} 2`,
				`parley_inbound_failed_total{connector="fb"} 1`,
				`parley_webhook_requests_total{code="200",connector="fb"} 1`,
				`parley_webhook_requests_total{code="503",connector="fb"} 1`,
			},
		},
		{
			name: "outbox observer records per region",
			record: func(m *metrics.Metrics) {
				o := m.OutboxObserver("eu")
				o.Sent("tg-eu", 3, 250*time.Millisecond)
				o.Failed("tg-eu", normalize.ErrWindowClosed)
				o.Retried("tg-eu", connectors.ClassRetryAfter)
				o.DeadLettered("tg-eu")
				o.Owned(2)
				o.Send("fb", "page-1", "sent")
				o.Send("fb", "page-1", "rate_limited")
				o.Backlog("fb", 12000, 90*time.Second)
			},
			want: []string{
				`parley_outbox_sent_total{connector="tg-eu",region="eu"} 1`,
				`parley_outbox_parts_total{connector="tg-eu",region="eu"} 3`,
				`parley_outbox_failed_total{code="window_closed",connector="tg-eu",region="eu"} 1`,
				`parley_outbox_retries_total{class="retry_after",connector="tg-eu",region="eu"} 1`,
				`parley_outbox_dead_lettered_total{connector="tg-eu",region="eu"} 1`,
				`parley_outbox_send_seconds_count{connector="tg-eu",region="eu"} 1`,
				`parley_outbox_partitions_owned{region="eu"} 2`,
				`parley_outbox_sends_total{account="page-1",connector="fb",outcome="sent",region="eu"} 1`,
				`parley_outbox_sends_total{account="page-1",connector="fb",outcome="rate_limited",region="eu"} 1`,
				`parley_outbox_backlog{connector="fb",region="eu"} 12000`,
				`parley_outbox_oldest_seconds{connector="fb",region="eu"} 90`,
			},
		},
		{
			name: "connector state gauge marks only the current state",
			record: func(m *metrics.Metrics) {
				m.ConnectorState("tg-eu", normalize.StateStarting)
				m.ConnectorState("tg-eu", normalize.StateRunning)
				m.MediaStored("eu", "tg-eu")
				m.MediaFailed("eu", "tg-eu")
			},
			want: []string{
				`parley_connector_state{connector="tg-eu",state="running"} 1`,
				`parley_connector_state{connector="tg-eu",state="starting"} 0`,
				`parley_media_stored_total{connector="tg-eu",region="eu"} 1`,
				`parley_media_failed_total{connector="tg-eu",region="eu"} 1`,
			},
		},
		{
			name:   "go and process collectors are registered",
			record: func(*metrics.Metrics) {},
			want:   []string{"go_goroutines ", "process_start_time_seconds "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			tt.record(m)
			body := scrape(t, m)
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("exposition lacks %q", w)
				}
			}
		})
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	// None of these may panic.
	m.EventPublished("eu", "telegram", "tg", normalize.TypeMessageReceived)
	m.EventDuplicate("eu", "telegram", "tg", normalize.TypeMessageReceived)
	m.PublishFailed("eu", "tg")
	m.WebhookAnswered("tg", 200)
	_ = m.RegisterInbound("tg", func() connectors.InboundStats { return connectors.InboundStats{} })
	m.OutboxSent("eu", "tg", 1, time.Second)
	m.OutboxFailed("eu", "tg", normalize.ErrExpired)
	m.OutboxRetried("eu", "tg", connectors.ClassTransient)
	m.OutboxDeadLettered("eu", "tg")
	m.MediaStored("eu", "tg")
	m.MediaFailed("eu", "tg")
	m.ConnectorState("tg", normalize.StateRunning)
	o := m.OutboxObserver("eu")
	o.Sent("tg", 1, time.Second)
	o.Failed("tg", normalize.ErrExpired)
	o.Retried("tg", connectors.ClassPermanent)
	o.DeadLettered("tg")
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
	if body := scrape(t, m); strings.Contains(body, "parley_") {
		t.Errorf("nil Metrics served parley metrics:\n%s", body)
	}
}

func TestTwoInstancesDoNotShareSeries(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.PublishFailed("eu", "tg")
	if body := scrape(t, b); strings.Contains(body, `parley_publish_failures_total{`) {
		t.Error("a failure recorded in one Metrics shows in another")
	}
}
