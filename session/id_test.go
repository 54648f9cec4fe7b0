package session

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

func TestIDs(t *testing.T) {
	seen := map[string]bool{}
	refs := map[string]bool{}
	for range 1000 {
		id := newID()
		if !ValidID(id) || len(id) != IDLength || seen[id] {
			t.Fatalf("newID = %q (valid %v, repeated %v)", id, ValidID(id), seen[id])
		}
		seen[id] = true
		ref, verifier := splitID(id)
		if ref+verifier != id || len(ref) != RefLength || len(verifier) != verifierLength || !validRef(ref) || refs[ref] {
			t.Fatalf("splitID(%q) = %q, %q", id, ref, verifier)
		}
		refs[ref] = true
		sel, err := base64.RawURLEncoding.Strict().DecodeString(ref)
		if err != nil || len(sel) != selectorBytes {
			t.Fatalf("selector %q: %d bytes, %v", ref, len(sel), err)
		}
		sec, err := base64.RawURLEncoding.Strict().DecodeString(verifier)
		if err != nil || len(sec) != verifierBytes || verifierBytes*8 != 256 {
			t.Fatalf("verifier %q: %d bytes, %v; want 256 bits", verifier, len(sec), err)
		}
		if got, want := verifierHash(verifier), sha256.Sum256([]byte(verifier)); got != want || !sameHash(got, want) {
			t.Fatalf("verifierHash = %x, want %x", got, want)
		}
		v := newVerifier()
		if !ValidID(ref+v) || v == verifier {
			t.Fatalf("newVerifier = %q", v)
		}
	}
	if sameHash(verifierHash("a"), verifierHash("b")) {
		t.Error("sameHash of different hashes")
	}
	for _, bad := range []string{"", newID()[:RefLength-1], strings.Repeat("A", RefLength-1) + "B", newID(), strings.Repeat("!", RefLength)} {
		if validRef(bad) {
			t.Errorf("validRef(%q) = true", bad)
		}
	}
}

func TestCookieValue(t *testing.T) {
	id, other := newID(), newID()
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{nil, ""},
		{[]string{"fxsession=" + id}, id},
		{[]string{"a=b;fxsession=" + id + ";c=d"}, id},
		{[]string{"  fxsession = " + id}, ""}, // a space before "=" is another name
		{[]string{"fxsession=" + id + " ; x=1"}, id},
		{[]string{"xfxsession=" + id}, ""},
		{[]string{"fxsession=bad", "fxsession=" + id}, id},
		{[]string{"fxsession=" + id + "; fxsession=" + other}, id},
		{[]string{"fxsession=" + id[:IDLength-1]}, ""},
		{[]string{"fxsession=" + id[:RefLength]}, ""},
	} {
		h := http.Header{}
		for _, l := range tc.lines {
			h.Add("Cookie", l)
		}
		got, ok := cookieValue(h, "fxsession")
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("cookieValue(%q) = %q, %v; want %q", tc.lines, got, ok, tc.want)
		}
	}
}
