package telegram

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors/kit"
)

// SecretTokenHeader carries setWebhook's secret_token in every webhook
// request.
const SecretTokenHeader = "X-Telegram-Bot-Api-Secret-Token"

// maxUpdateBytes bounds one webhook body. The shared server limits bodies
// already; an update is a few KB, so this only guards a handler mounted
// elsewhere.
const maxUpdateBytes = 1 << 20

// errWrongSecret is why a webhook request is refused with 401.
var errWrongSecret = errors.New("wrong secret token")

// verifyWebhook checks the secret Telegram sends back in every request, in
// constant time. Unlike the SDK's handler, Parley refuses a wrong one:
// Telegram retries every non-2xx answer, a forger gets nothing stored.
func (c *Connector) verifyWebhook(r *http.Request, _ []byte) error {
	got := r.Header.Get(SecretTokenHeader)
	if subtle.ConstantTimeCompare([]byte(got), []byte(c.cfg.webhookSecret)) != 1 {
		return errWrongSecret
	}
	return nil
}

// parseWebhook maps the one update of a webhook request. A body that is
// not an update at all is malformed (400); an update Parley cannot map is
// dead-lettered and acknowledged, as the poll loop does, or Telegram would
// redeliver it for ever and hold back every update behind it.
func (c *Connector) parseWebhook(body []byte) ([]kit.Update, error) {
	u, err := parseUpdate(body)
	if err != nil && !errors.Is(err, errUnreadableUpdate) {
		return nil, err
	}
	return []kit.Update{c.toUpdate(c.inboundContext(), body, u, err)}, nil
}

// toUpdate maps one parsed update (or the error parsing it met) into what
// the kit stores.
func (c *Connector) toUpdate(ic inboundContext, raw []byte, u *models.Update, parseErr error) kit.Update {
	out := kit.Update{Raw: raw}
	if u != nil {
		out.ID = strconv.FormatInt(u.ID, 10)
	}
	if parseErr != nil {
		out.Err = parseErr
		return out
	}
	res, err := mapUpdate(ic, u)
	if err != nil {
		out.Err = err
		return out
	}
	out.Events, out.Ignored = res.Events, res.Ignored
	if res.CallbackQueryID != "" || res.Reachability != nil {
		out.Data = followUp{CallbackQueryID: res.CallbackQueryID, Reachability: res.Reachability}
	}
	return out
}
