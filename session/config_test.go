package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/fxsession/fxsession/cache/memstore"
)

func TestConfigErrorsMatch(t *testing.T) {
	b := memstore.New(memstore.Options{})
	defer b.Close()
	for name, cfg := range map[string]Config{
		"cookie name": {CookieName: "bad name"},
		"host prefix": {HostPrefix: true, CookieDomain: "example.com"},
		"max payload": {MaxPayload: -1},
		"namespace":   {Namespace: "bad/ns"},
	} {
		if _, err := New(b, cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: error %v does not match ErrConfig", name, err)
		}
	}
}

// TestSecureAutoRemoteAddr: SecureAuto believes X-Forwarded-Proto from a trusted
// proxy whether RemoteAddr is host:port or a bare IP, and never from others.
func TestSecureAutoRemoteAddr(t *testing.T) {
	b := memstore.New(memstore.Options{})
	defer b.Close()
	m, err := New(b, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		remote string
		secure bool
	}{
		{"10.1.2.3:4567", true},
		{"10.1.2.3", true},
		{"[::ffff:10.1.2.3]:80", true},
		{"192.0.2.7:4567", false},
		{"192.0.2.7", false},
		{"garbage", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		r.Header.Set("X-Forwarded-Proto", "https")
		w := httptest.NewRecorder()
		m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, _ := FromContext(r.Context())
			if err := s.Start(r.Context()); err != nil {
				t.Fatal(err)
			}
		})).ServeHTTP(w, r)
		cs := w.Result().Cookies()
		if len(cs) != 1 || cs[0].Secure != tc.secure {
			t.Errorf("RemoteAddr %q: cookies %v, want Secure=%v", tc.remote, cs, tc.secure)
		}
	}
}
