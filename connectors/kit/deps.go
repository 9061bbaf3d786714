package kit

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/parley-gateway/parley/connectors"
)

// WithDefaults fills the Deps a connector can work without in a test that
// builds only part of them: a discarding Logger, time.Now and
// http.DefaultClient. Parley itself sets every field.
func WithDefaults(deps connectors.Deps) connectors.Deps {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = http.DefaultClient
	}
	return deps
}
