package session

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
)

// A session ID — the cookie's value — is two random parts in unpadded base64url:
//
//   - the selector, 128 bits: the session's public reference ([Session.Ref]), the
//     key of its record in the store. It stays for the session's whole life, so
//     renewing the ID moves no data. Knowing it does not let anyone use the session.
//   - the verifier, 256 bits: the secret. The store keeps only its SHA-256;
//     renewal replaces it, so the previous cookie dies at once. It is compared in
//     constant time.
const (
	selectorBytes = 16
	verifierBytes = 32
	// RefLength is the length of a session's public reference (the selector).
	RefLength = 22
	// verifierLength is the length of the verifier part of an ID.
	verifierLength = 43
	// IDLength is the length of a session ID: the selector and the verifier, 65
	// characters of unpadded base64url.
	IDLength = RefLength + verifierLength
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

// canonical reports whether s is canonical unpadded base64url of its length: every
// byte in the alphabet and the unused low bits of the last character zero (pad is
// how many low bits are unused: 2 for 16 bytes, 2 for 32 bytes).
func canonical(s string, pad uint8) bool {
	for i := 0; i < len(s); i++ {
		if b64[s[i]] == 0 {
			return false
		}
	}
	return len(s) > 0 && (b64[s[len(s)-1]]-1)&(1<<pad-1) == 0
}

// ValidID reports whether id has the form of a session ID this package issues:
// exactly 65 characters of canonical unpadded base64url (a 22-character selector
// and a 43-character verifier). It looks at nothing but the string.
func ValidID(id string) bool {
	return len(id) == IDLength && canonical(id[:RefLength], 4) && canonical(id[RefLength:], 2)
}

// validRef reports whether s has the form of a session's reference (a selector).
func validRef(s string) bool { return len(s) == RefLength && canonical(s, 4) }

// splitID returns the selector and verifier of a valid ID.
func splitID(id string) (ref, verifier string) { return id[:RefLength], id[RefLength:] }

// newID mints a session ID: 128 bits of selector and 256 bits of verifier from
// crypto/rand.
func newID() string {
	var b [selectorBytes + verifierBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	out := make([]byte, IDLength)
	base64.RawURLEncoding.Encode(out[:RefLength], b[:selectorBytes])
	base64.RawURLEncoding.Encode(out[RefLength:], b[selectorBytes:])
	return string(out)
}

// newVerifier mints a fresh verifier for a session whose selector stays.
func newVerifier() string {
	var b [verifierBytes]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// verifierHash is what the store keeps of a verifier: its SHA-256.
func verifierHash(verifier string) [sha256.Size]byte {
	var buf [verifierLength]byte // no allocation
	n := copy(buf[:], verifier)
	return sha256.Sum256(buf[:n])
}

// sameHash compares two verifier hashes in constant time.
func sameHash(a, b [sha256.Size]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

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
