package session

import (
	"errors"

	"github.com/fxsession/fxsession/cache"
)

// Sentinel errors; match them with [errors.Is].
var (
	// ErrNoSession: there is no session to use: the context carries none (the
	// handler is not served through [Manager.Middleware], and no
	// [Manager.NewContext] made one), so [FromContext] returned a nil *Session.
	ErrNoSession = errors.New("session: no session in the context (serve the handler through Manager.Middleware, or use Manager.NewContext outside HTTP)")
	// ErrNotStarted: the operation needs a started session and the request has
	// none (call [Session.Start] first).
	ErrNotStarted = errors.New("session: not started")
	// ErrReadOnly: a write on a read-only session ([Session.ReadOnly], [ReadOnly]).
	ErrReadOnly = errors.New("session: read-only")
	// ErrStateless: the session was used on a [Stateless] route in development mode.
	ErrStateless = errors.New("session: used on a stateless route")
	// ErrHeadersSent: the operation needs a new cookie but the response headers
	// are already out (start or renew the session before writing the response).
	ErrHeadersSent = errors.New("session: response headers already sent")
	// ErrUnknownBag: [Session.Bag] was asked for a bag that was never registered.
	ErrUnknownBag = errors.New("session: unknown bag")
	// ErrRegistrationClosed: a bag was registered after the manager started serving.
	ErrRegistrationClosed = errors.New("session: bag registration closed (the manager has started)")
	// ErrNotDetached: [Session.Commit] was called on a session the middleware
	// manages (it commits by itself).
	ErrNotDetached = errors.New("session: the middleware commits this session")
	// ErrRequestEnded: a change to a request's session after the request
	// ended (its handler returned or panicked), from a goroutine it left
	// behind. The request's last commit point has passed, so the change would
	// never be saved; reads still answer from the request's view.
	ErrRequestEnded = errors.New("session: the request ended (its handler returned): changes are no longer saved")
	// ErrAborted is returned by writes to a response that the error handler
	// already answered.
	ErrAborted = errors.New("session: response replaced by the session error handler")
	// ErrLockTimeout: an [Exclusive] route could not take its session's lock
	// within Config.LockWait (another request of the session held it).
	ErrLockTimeout = errors.New("session: timed out waiting for the session lock")
	// ErrNotFound is cache.ErrNotFound (the same value): a key or session that
	// does not exist.
	ErrNotFound = cache.ErrNotFound
)
