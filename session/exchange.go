package session

import (
	"context"
)

// Exchange carries a session through one exchange of a transport that is not a
// net/http handler — a gRPC call or stream (package grpcsession uses it): the
// transport reads the session ID from its request metadata, begins the
// exchange, runs its handler with the exchange's context (FromContext and
// package scope work in it), commits before it sends its response headers,
// and ends it. The rules of the HTTP middleware hold: lazy resume, strict
// mode, renewal, rotation, the update threshold, the error behaviour.
type Exchange struct {
	rs *reqState
}

// exchangeState is an Exchange with its client: allocated apart from the
// request state, which the HTTP middleware keeps small.
type exchangeState struct {
	Exchange
	peer Peer
}

// Peer describes the client of an exchange, for logs and the session's device.
type Peer struct {
	// Method names the call ("/shop.Basket/Add"), for logs.
	Method string
	// UserAgent is the client's user agent (gRPC's "user-agent" metadata).
	UserAgent string
	// Addr is the client's address ("host:port" or an IP).
	Addr string
}

// Begin starts an exchange for a request that carried id (a session ID, "" when
// none; a malformed one counts as none and never reaches the store). The
// returned context carries the exchange's session. Call End when the exchange
// is over (defer it: it runs the end hooks when the handler panics too).
func (m *Manager) Begin(ctx context.Context, id string, p Peer) (context.Context, *Exchange) {
	m.seal()
	rs := m.newRequest(ctx)
	if ValidID(id) {
		rs.cookieID, rs.src = id, srcHeader
		rs.phase = phaseLazy
	}
	x := &exchangeState{peer: p}
	x.rs = rs
	rs.exts().peer = &x.peer
	return &rs.ctx, &x.Exchange
}

// Commit is the commit point before the response's headers: it writes what the
// exchange changed and says what the client must learn: a new ID (a session
// started or renewed: send it back in the response metadata), or that its ID is
// dead (send an empty one). An error means the session could not be resumed or
// saved: answer the call with an unavailable status. Commit runs once; later
// calls return what the first returned.
func (x *Exchange) Commit() (newID string, expire bool, err error) {
	return x.commit(false)
}

// commit is Commit; final also ends the exchange (End before any Commit).
func (x *Exchange) commit(final bool) (newID string, expire bool, err error) {
	rs := x.rs
	rs.mu.Lock()
	done := rs.headersDone
	rs.mu.Unlock()
	if done || rs.passIdle(final) {
		return "", false, nil
	}
	err = rs.commitPoint(atHeaders, final)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if err == nil {
		err = rs.resumeErr()
	}
	rs.headersDone = true
	if err != nil {
		rs.aborted = true
		rs.m.log.Error("session failed before the response", "method", rs.path(), "error", err)
		return "", false, err
	}
	out := rs.idOut()
	if out.send {
		return out.value, false, nil
	}
	return "", out.expire, nil
}

// KeepAlive makes a long exchange (a stream) write its session's activity
// whenever the update threshold passes, until End.
func (x *Exchange) KeepAlive() { x.rs.startKeepAlive() }

// End is the exchange's last commit point (what the handler changed after the
// headers) and runs its end hooks.
func (x *Exchange) End() {
	rs := x.rs
	defer rs.end()
	rs.mu.Lock()
	headers := rs.headersDone
	rs.mu.Unlock()
	if !headers {
		_, _, _ = x.commit(true)
		return
	}
	if err := rs.commitPoint(afterHeaders, true); err != nil {
		rs.m.log.Error("session commit after the response began", "method", rs.path(), "error", err)
	}
}
