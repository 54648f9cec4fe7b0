package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// cookieName is the session cookie's default name.
const cookieName = "fxsession"

// visitor is one browser: it keeps the session cookie between requests, whichever
// server (in process or over HTTP) it talks to. It is safe for concurrent use.
type visitor struct {
	mu     sync.Mutex
	cookie string
}

// Cookie is the session ID the visitor holds ("" for none).
func (v *visitor) Cookie() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cookie
}

// SetCookie makes the visitor send id from now on.
func (v *visitor) SetCookie(id string) {
	v.mu.Lock()
	v.cookie = id
	v.mu.Unlock()
}

func (v *visitor) prepare(r *http.Request) {
	if c := v.Cookie(); c != "" {
		r.Header.Set("Cookie", cookieName+"="+c)
	}
}

func (v *visitor) remember(h http.Header) {
	resp := http.Response{Header: h}
	for _, c := range resp.Cookies() {
		if c.Name != cookieName {
			continue
		}
		if c.MaxAge < 0 {
			v.SetCookie("")
		} else {
			v.SetCookie(c.Value)
		}
	}
}

// reply is a response, read whole.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
	Took   time.Duration
	Err    error // transport error (no response)
}

// JSON decodes the body into a map.
func (r reply) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("decoding %q (status %d): %v", r.Body, r.Status, err)
	}
	return m
}

// Int reads a number field of the JSON body.
func (r reply) Int(t testing.TB, field string) int {
	t.Helper()
	f, ok := r.JSON(t)[field].(float64)
	if !ok {
		t.Fatalf("no number %q in %s (status %d)", field, r.Body, r.Status)
	}
	return int(f)
}

func (r reply) String() string {
	if r.Err != nil {
		return fmt.Sprintf("error %v after %v", r.Err, r.Took)
	}
	return fmt.Sprintf("%d %s after %v", r.Status, strings.TrimSpace(string(r.Body)), r.Took)
}

// serve sends a request straight to h in this goroutine (no network).
func (v *visitor) serve(h http.Handler, method, target string) reply {
	r := httptest.NewRequest(method, target, nil)
	v.prepare(r)
	w := httptest.NewRecorder()
	start := time.Now()
	h.ServeHTTP(w, r)
	res := w.Result()
	v.remember(res.Header)
	b, _ := io.ReadAll(res.Body)
	return reply{Status: res.StatusCode, Header: res.Header, Body: b, Took: time.Since(start)}
}

// send sends a request over HTTP to base (http://host:port).
func (v *visitor) send(hc *http.Client, base, method, target string) reply {
	return v.sendJSON(hc, base, method, target, "")
}

// sendJSON sends a request with a JSON body ("" for none) over HTTP to base.
func (v *visitor) sendJSON(hc *http.Client, base, method, target, body string) reply {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequestWithContext(ctx, method, base+target, rd)
	if err != nil {
		return reply{Err: err}
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	v.prepare(r)
	start := time.Now()
	res, err := hc.Do(r)
	if err != nil {
		return reply{Err: err, Took: time.Since(start)}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	took := time.Since(start)
	if err != nil {
		return reply{Err: err, Took: took}
	}
	v.remember(res.Header)
	return reply{Status: res.StatusCode, Header: res.Header, Body: b, Took: took}
}

// httpClient is a client with its own connection pool (closed when the test
// ends, so that goleak sees no idle connection goroutines), never following
// redirects.
func httpClient(t testing.TB) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// mustStatus fails the test unless r has the status.
func mustStatus(t testing.TB, r reply, status int, what string) {
	t.Helper()
	if r.Err != nil || r.Status != status {
		t.Fatalf("%s: %v, want status %d", what, r, status)
	}
}
