package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
)

const (
	// idBytes is the entropy of a session ID: 256 bits.
	idBytes = 32
	// IDLength is the length of a session ID: 32 random bytes in unpadded
	// base64url.
	IDLength = 43
	// HashLength is the length of a session's hash (hex SHA-256 of its ID), the
	// handle admin tools use: the store never holds the ID itself.
	HashLength = 64
	// storageIDBytes is the entropy of a storage ID (the prefix of data keys).
	storageIDBytes = 16
	// shortHashLength is the length of HashedID, for logs.
	shortHashLength = 16
)

// b64 is the base64url alphabet's reverse table: index+1 of each byte, 0 when not
// in the alphabet. It is a constant lookup table.
var b64 = func() (t [256]uint8) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = uint8(i + 1)
	}
	return t
}()

// ValidID reports whether id has the form of a session ID this package issues:
// exactly 43 characters of unpadded base64url, canonically encoded (the unused low
// bits of the last character are zero). It looks at nothing but the string.
func ValidID(id string) bool {
	if len(id) != IDLength {
		return false
	}
	for i := 0; i < IDLength; i++ {
		if b64[id[i]] == 0 {
			return false
		}
	}
	// 43 characters carry 258 bits; the last character's two low bits are padding.
	return (b64[id[IDLength-1]]-1)&3 == 0
}

// newID mints a session ID: 256 bits from crypto/rand.
func newID() string {
	var b [idBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newStorageID mints the prefix of a session's data keys (128 random bits).
func newStorageID() string {
	var b [storageIDBytes]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// hashID is the metadata key of a session: hex SHA-256 of its ID.
func hashID(id string) string {
	var sum [sha256.Size]byte
	if len(id) == IDLength {
		var buf [IDLength]byte // no allocation for the usual case
		copy(buf[:], id)
		sum = sha256.Sum256(buf[:])
	} else {
		sum = sha256.Sum256([]byte(id))
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// validHash reports whether h has the form of hashID's result.
func validHash(h string) bool {
	if len(h) != HashLength {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// cookieValue returns the value of the first cookie called name in the request's
// Cookie headers whose value is a well-formed session ID, without allocating.
// Malformed values are skipped; the store is never asked about them.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		if v, ok := scanCookies(line, name); ok {
			return v, true
		}
	}
	return "", false
}

// scanCookies looks for name in one Cookie header line ("a=1; b=2").
func scanCookies(line, name string) (string, bool) {
	for len(line) > 0 {
		var part string
		if i := strings.IndexByte(line, ';'); i >= 0 {
			part, line = line[:i], line[i+1:]
		} else {
			part, line = line, ""
		}
		part = trimSpace(part)
		if len(part) <= len(name) || part[len(name)] != '=' || part[:len(name)] != name {
			continue
		}
		v := trimSpace(part[len(name)+1:])
		if ValidID(v) {
			return v, true
		}
	}
	return "", false
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
