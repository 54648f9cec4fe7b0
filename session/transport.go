package session

import (
	"net/http"
	"strings"
)

// Where a request's session ID came from.
const (
	srcNone uint8 = iota
	srcCookie
	srcHeader
)

// requestID returns the request's well-formed session ID and where it came
// from: the ID header first (when Config.IDFrom allows one), then the cookie.
// Malformed values are skipped without touching the store.
func (m *Manager) requestID(h http.Header) (string, uint8) {
	if m.cfg.idHeader != "" {
		for _, v := range h[m.cfg.idHeader] {
			if id, ok := m.headerID(v); ok {
				return id, srcHeader
			}
		}
	}
	if m.cfg.idCookie {
		if id, ok := cookieValue(h, m.cfg.cookieName); ok {
			return id, srcCookie
		}
	}
	return "", srcNone
}

// headerID parses one value of the ID header: the bare ID, or the scheme, a
// space and the ID for Authorization.
func (m *Manager) headerID(v string) (string, bool) {
	v = trimSpace(v)
	if m.cfg.idScheme != "" {
		scheme, rest, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, m.cfg.idScheme) {
			return "", false
		}
		v = trimSpace(rest)
	}
	return v, ValidID(v)
}

// idOut is what a response tells the client about its session ID.
type idOut struct {
	value   string // the ID to send ("" with expire)
	maxAge  int    // the cookie's Max-Age with value
	send    bool   // a new or renewed ID the client must learn
	refresh bool   // the same ID again: a persistent cookie's expiry moves
	expire  bool   // the client must forget its ID
}

// idOut decides what the response says about the ID. Lock held.
func (rs *reqState) idOut() idOut {
	switch {
	case rs.readOnly && rs.expire:
		// A dead ID is forgotten on read-only routes too: nothing is written.
		rs.expire = false
		return idOut{expire: true}
	case rs.readOnly:
	case rs.started() && rs.needCookie:
		rs.needCookie = false
		return idOut{value: rs.id, maxAge: rs.maxAge(), send: true}
	case rs.phase == phaseResumed && rs.maxAge() > 0 && rs.metaWritten:
		return idOut{value: rs.id, maxAge: rs.maxAge(), refresh: true}
	case rs.expire:
		rs.expire = false
		return idOut{expire: true}
	}
	return idOut{}
}

// writeID puts out into the response header: on the channel the request used,
// and on every configured one for a request that came without an ID.
func (rs *reqState) writeID(h http.Header, out idOut) {
	if out == (idOut{}) {
		return
	}
	m := rs.m
	if m.cfg.idCookie && rs.src != srcHeader {
		c := m.newCookie(rs.req, out.value)
		if out.expire {
			c.MaxAge = -1
		} else {
			c.MaxAge = out.maxAge
		}
		h.Add("Set-Cookie", c.String())
	}
	if m.cfg.idHeader != "" && rs.src != srcCookie && !out.refresh {
		h.Set(m.cfg.idRespHeader, out.value)
	}
}
