package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/fxsession/fxsession/cache"
)

// Exclusive serialises the requests through h that belong to one session, across
// every process sharing the store: the opt-in per-session lock for handlers that
// cannot express their change as an atomic scope Handle.Update (read, decide,
// write). It takes a cache-layer lock named after the session's reference, with
// Config.LockTTL as its lifetime, waits at most Config.LockWait for it (then the
// ErrorHandler answers with an error matching ErrLockTimeout; by default a 503),
// runs h, commits the session while still holding the lock, and releases it with
// its owner token (a lock that expired and was taken by another request is left
// alone).
//
// Requests without a session cookie run unlocked: no other request can share a
// session that does not exist yet. Read-only requests ([ReadOnly] around
// Exclusive, or a read-only session) never lock. Put Exclusive inside
// [Manager.Middleware], around the mutating routes only:
//
//	mux.Handle("POST /checkout", session.Exclusive(checkout))
func Exclusive(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := FromContext(r.Context())
		if !ok || s.st.owner == nil {
			h.ServeHTTP(w, r)
			return
		}
		rs := s.st.owner
		rs.mu.Lock()
		id, readOnly := rs.cookieID, rs.readOnly
		rs.mu.Unlock()
		if readOnly || id == "" {
			h.ServeHTTP(w, r)
			return
		}
		m := rs.m
		ref, _ := splitID(id)
		name := "lock." + ref
		token, err := cache.WaitLock(r.Context(), m.store, name, m.cfg.lockTTL, m.cfg.lockWait)
		if err != nil {
			if errors.Is(err, cache.ErrLocked) {
				err = fmt.Errorf("%w (%v): %w", ErrLockTimeout, m.cfg.lockWait, err)
			}
			m.log.Warn("session lock not taken", "session", ref, "method", r.Method, "path", r.URL.Path, "error", err)
			rs.mu.Lock()
			rs.aborted, rs.headersDone = true, true
			rs.mu.Unlock()
			if m.cfg.errorHandler != nil {
				m.cfg.errorHandler(rs.rw.ResponseWriter, r, err)
			} else {
				http.Error(rs.rw.ResponseWriter, "Service Unavailable: the session is busy", http.StatusServiceUnavailable)
			}
			return
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), m.cfg.commitTimeout)
			defer cancel()
			if ok, err := m.store.Unlock(ctx, name, token); err != nil || !ok {
				m.log.Warn("session lock lost or not released", "session", ref, "released", ok, "error", err)
			}
		}()
		h.ServeHTTP(w, r)
		// Commit inside the lock, so the next request of the session sees it.
		rs.finish()
	})
}
