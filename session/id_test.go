package session

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
)

func TestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newID()
		if !ValidID(id) || len(id) != IDLength || seen[id] {
			t.Fatalf("newID = %q (valid %v, repeated %v)", id, ValidID(id), seen[id])
		}
		seen[id] = true
		sum := sha256.Sum256([]byte(id))
		if got, want := hashID(id), hex.EncodeToString(sum[:]); got != want || !validHash(got) {
			t.Fatalf("hashID = %s, want %s", got, want)
		}
		if sid := newStorageID(); !validStorageID(sid) {
			t.Fatalf("newStorageID = %q", sid)
		}
	}
	if validHash(newID()) || validHash("ABCDEF"+hashID("x")[6:]) {
		t.Error("validHash accepts non-hashes")
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
		{[]string{"fxsession=" + id[:42]}, ""},
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
