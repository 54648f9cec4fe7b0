package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"
)

// recordDevice notes the request's device (User-Agent) and, as configured, its
// client address in the session's activity. Lock held, request session.
func (st *state) recordDevice() {
	switch {
	case st.req != nil:
		st.act.device = truncateUTF8(st.req.Header.Get("User-Agent"), maxDevice)
		st.act.address = st.m.clientAddress(st.req.RemoteAddr, st.req.Header)
	case st.ext != nil && st.ext.peer != nil:
		st.act.device = truncateUTF8(st.ext.peer.UserAgent, maxDevice)
		st.act.address = st.m.clientAddress(st.ext.peer.Addr, nil)
	}
}

// truncateUTF8 cuts s to at most n bytes without leaving half a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// clientAddress is the request's client address as Config.ClientAddress records
// it: the peer's address, or the last address X-Forwarded-For names before a
// trusted proxy when the peer is one of Config.TrustedProxies.
func (m *Manager) clientAddress(peer string, h http.Header) string {
	if m.cfg.address == AddressNone {
		return ""
	}
	addr, ok := remoteAddr(peer)
	if !ok {
		return ""
	}
	if m.trusted(addr) {
		// X-Forwarded-For: client, proxy1, proxy2 — walk from the right past
		// the trusted proxies.
		hops := strings.Split(strings.Join(h.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			addr = a.Unmap()
			if !m.trusted(addr) {
				break
			}
		}
	}
	switch m.cfg.address {
	case AddressTruncated:
		bits := 24
		if addr.Is6() {
			bits = 48
		}
		p, err := addr.Prefix(bits)
		if err != nil {
			return ""
		}
		return p.String()
	case AddressHashed:
		mac := hmac.New(sha256.New, m.cfg.addressKey)
		mac.Write(addr.AsSlice())
		return hex.EncodeToString(mac.Sum(nil)[:8])
	}
	return addr.String()
}

// trusted reports whether addr is one of Config.TrustedProxies.
func (m *Manager) trusted(addr netip.Addr) bool {
	for _, p := range m.cfg.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
