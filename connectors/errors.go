package connectors

import (
	"errors"
	"fmt"
	"time"

	"github.com/parley-gateway/parley/normalize"
)

// Class says what the outbox should do about a failed send.
type Class int

// Delivery classes.
const (
	// ClassTransient: try again with exponential backoff and jitter.
	ClassTransient Class = iota
	// ClassRetryAfter: the platform said when to try again; wait exactly
	// that long.
	ClassRetryAfter
	// ClassPermanent: trying again cannot help; dead-letter it.
	ClassPermanent
)

func (c Class) String() string {
	switch c {
	case ClassTransient:
		return "transient"
	case ClassRetryAfter:
		return "retry_after"
	case ClassPermanent:
		return "permanent"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Scope is what a platform's retry-after holds back.
type Scope int

const (
	// ScopeConversation: only this conversation waits (a per-chat limit).
	ScopeConversation Scope = iota
	// ScopeAccount: every send of the account waits (an app, page or
	// workspace limit).
	ScopeAccount
)

func (s Scope) String() string {
	if s == ScopeAccount {
		return "account"
	}
	return "conversation"
}

// Error is a classified delivery failure.
type Error struct {
	Class      Class
	RetryAfter time.Duration // for ClassRetryAfter
	// Scope is what RetryAfter holds back: the conversation (the zero
	// value) or the whole account (Policy's Limits.Account).
	Scope        Scope
	Code         normalize.ErrorCode // the reply.failed code if this ends the reply
	PlatformCode string              // the platform's own code ("429", "403", "131047")
	Err          error
}

func (e *Error) Error() string {
	msg := e.Class.String()
	if e.PlatformCode != "" {
		msg += " (" + e.PlatformCode + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent classifies err as a failure that no retry can fix.
func Permanent(code normalize.ErrorCode, platformCode string, err error) error {
	return &Error{Class: ClassPermanent, Code: code, PlatformCode: platformCode, Err: err}
}

// RetryAfter classifies err as throttling: try again after d.
func RetryAfter(d time.Duration, platformCode string, err error) error {
	return &Error{Class: ClassRetryAfter, RetryAfter: d, Code: normalize.ErrRateLimited, PlatformCode: platformCode, Err: err}
}

// AccountRetryAfter classifies err as throttling of the whole account:
// no send of the account before d.
func AccountRetryAfter(d time.Duration, platformCode string, err error) error {
	return &Error{Class: ClassRetryAfter, RetryAfter: d, Scope: ScopeAccount, Code: normalize.ErrRateLimited, PlatformCode: platformCode, Err: err}
}

// Transient classifies err as a passing failure (5xx, timeout, network).
func Transient(platformCode string, err error) error {
	return &Error{Class: ClassTransient, Code: normalize.ErrPlatformError, PlatformCode: platformCode, Err: err}
}

// OperatorError ends a connector's Run when only an operator can help: a
// logged-out device, a revoked token. The supervisor does not restart it;
// the connector stays in State with its Action until the operator acts
// (re-pairs, or sets a new token and reloads the gateway).
type OperatorError struct {
	State  normalize.State // normalize.StateLoggedOut or normalize.StateBadCredentials
	Reason string          // what happened, in a sentence; never a secret
	Action string          // what the operator must do
	Err    error
}

func (e *OperatorError) Error() string {
	msg := string(e.State) + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *OperatorError) Unwrap() error { return e.Err }

// NeedsOperator returns the error that ends Run until an operator acts.
func NeedsOperator(state normalize.State, reason, action string, err error) error {
	return &OperatorError{State: state, Reason: reason, Action: action, Err: err}
}

// Classify returns err's classification. An error that carries none is
// transient: a timeout, a network error, anything unforeseen.
func Classify(err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	return &Error{Class: ClassTransient, Code: normalize.ErrPlatformError, Err: err}
}
