package session

import (
	"context"
	"time"
)

// keepAliveMax bounds the pause between two keep-alive checks of a long-lived
// request whatever the update threshold (Never or 0: every request touches).
const keepAliveMax = 30 * time.Second

// startKeepAlive makes a long-lived request (its response was flushed or
// hijacked) write its session's activity whenever the update threshold
// passes, until the request ends, so that a connection that stays open (server
// events, a WebSocket, a gRPC stream) does not see its session expire. It runs
// once per request.
func (rs *reqState) startKeepAlive() {
	rs.life.Or(lifeUsed)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	x := rs.exts() // a long-lived request's own: the usual one stays small
	if x.alive != nil || rs.readOnly {
		return
	}
	every := rs.m.cfg.threshold
	if every <= 0 || every > keepAliveMax {
		every = keepAliveMax
	}
	stop := make(chan struct{})
	x.alive = stop
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := rs.keepAlive(); err != nil {
					rs.m.log.Warn("session keep-alive of a long-lived request", "error", err)
				}
			}
		}
	}()
}

// keepAlive writes the activity of a started session whose threshold passed.
func (rs *reqState) keepAlive() error {
	rs.mu.Lock()
	now := rs.m.cfg.now()
	due := !rs.ended() && rs.started() && rs.persisted && rs.touchDue(now)
	if due && rs.act.last.Before(now) {
		rs.act.last = now // the connection is active now
	}
	rs.mu.Unlock()
	if !due {
		return nil
	}
	return rs.commitPoint(afterHeaders, false)
}

// stopKeepAlive ends the keep-alive, if one runs.
func (rs *reqState) stopKeepAlive() {
	rs.mu.Lock()
	var stop chan struct{}
	if rs.ext != nil {
		stop, rs.ext.alive = rs.ext.alive, nil
	}
	rs.mu.Unlock()
	if stop != nil {
		close(stop)
	}
}

// end runs the request's end hooks (Extension.OnEnd), in the order they were
// registered, when the request is over: the handler returned or panicked. A
// hook that panics is logged; the others still run.
func (rs *reqState) end() {
	rs.mu.Lock()
	x := rs.ext
	var (
		hooks []func()
		stop  chan struct{}
	)
	if x != nil {
		hooks, x.ends = x.ends, nil
		stop, x.alive = x.alive, nil
	}
	rs.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	for _, fn := range hooks {
		func() {
			defer func() {
				if p := recover(); p != nil {
					rs.m.log.Error("a request's end hook panicked", "panic", p)
				}
			}()
			fn()
		}()
	}
}

// Sync is for long-lived requests — server-sent events, WebSocket connections,
// gRPC streams — that use their session over a long time: it writes what the
// request changed so far (and the activity, when the update threshold passed),
// then makes the next use of the session read it again from the store, so that
// the request sees what other requests committed meanwhile (values, bags and,
// through package scope, session-scoped objects). Between two Syncs, a
// request's view of its session is the one it read; other requests' changes
// show after the next Sync. Requests that end quickly never need it.
func (s *Session) Sync(ctx context.Context) error {
	if s == nil || s.st == nil {
		return ErrNoSession
	}
	st := s.st
	if rs := st.owner; rs != nil {
		if rs.ended() {
			return ErrRequestEnded
		}
		if err := rs.commitPoint(atNow, false); err != nil {
			return err
		}
	} else if err := s.Commit(ctx); err != nil {
		return err
	}
	st.mu.Lock()
	var refresh []Refresher
	if st.phase == phaseResumed || st.phase == phaseNew && st.persisted {
		if st.id != "" {
			st.cookieID = st.id
			st.phase = phaseLazy
			st.live = nil
			st.staged = nil
		}
	}
	if st.ext != nil {
		refresh = st.ext.refreshers()
	}
	st.mu.Unlock()
	for _, r := range refresh {
		r.Refresh()
	}
	return nil
}
