package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown sends SIGTERM to a serving demo process while adds are in
// flight: twenty whose bodies are still arriving (certainly in flight) and
// twenty clients adding in a loop. The process stops accepting connections,
// finishes the requests it has, and exits 0; after a restart on the same file
// store, the basket holds exactly what the 200 responses acknowledged.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-store", "file", "-dir", filepath.Join(dir, "sessions"), "-namespace", "shutdown",
		"-catalog", filepath.Join(dir, "catalog.db"), "-shutdown-timeout", "20s"}
	p := startDemo(t, "demo", args...)
	v := newVisitor(t, p.URL())
	v.must(200, "POST", "/api/basket/items", `{"sku":"tea-assam","qty":1}`)
	cookie := v.cookie()

	transport := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 60 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// add posts qty of sku with the visitor's cookie and reports whether the
	// answer was 200 (and a basket).
	add := func(body io.Reader) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", p.URL()+"/api/basket/items", body)
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cookie", "fxsession="+cookie)
		res, err := client.Do(req)
		if err != nil {
			return false, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return false, fmt.Errorf("reading the answer: %w", err)
		}
		if res.StatusCode != 200 {
			return false, fmt.Errorf("%s: %s", res.Status, b)
		}
		var basket basketJSON
		if err := json.Unmarshal(b, &basket); err != nil || len(basket.Items) == 0 {
			return false, fmt.Errorf("200 with %q (%v)", b, err)
		}
		return true, nil
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		slowOK  int // Sencha units acknowledged by the slow requests
		slowN   int // slow requests answered 200
		fastOK  int // Darjeeling units acknowledged by the looping clients
		fastErr []string
		release = make(chan struct{})
	)
	// Twenty adds whose bodies arrive in two halves: the handler starts, reads
	// the first half and waits for the second, which comes after SIGTERM.
	for i := range 20 {
		qty := i + 1
		pr, pw := io.Pipe()
		wg.Go(func() {
			ok, err := add(pr)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				slowOK += qty
				slowN++
			} else {
				t.Errorf("slow add of %d: %v", qty, err)
			}
		})
		go func() {
			defer pw.Close()
			if _, err := io.WriteString(pw, `{"sku":"tea-sencha",`); err != nil {
				return
			}
			select {
			case <-release:
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			}
			fmt.Fprintf(pw, `"qty":%d}`, qty)
		}()
	}
	time.Sleep(500 * time.Millisecond) // the twenty reach their handlers

	// Twenty clients adding as fast as they can, until the server refuses them.
	stopFast := make(chan struct{})
	for range 20 {
		wg.Go(func() {
			for {
				select {
				case <-stopFast:
					return
				default:
				}
				ok, err := add(strings.NewReader(`{"sku":"tea-darjeeling","qty":1}`))
				mu.Lock()
				if ok {
					fastOK++
				} else {
					fastErr = append(fastErr, err.Error())
				}
				mu.Unlock()
				if !ok {
					return
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	p.signal(syscall.SIGTERM)
	// The listener closes at once: new connections are refused...
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the server still accepts connections 10 s after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ...but the process waits for the requests in flight.
	time.Sleep(200 * time.Millisecond)
	select {
	case <-p.done:
		t.Fatalf("the process exited with requests in flight: %v\n%s", p.err, p.stderr.String())
	default:
	}
	close(release)
	close(stopFast)
	wg.Wait()
	if code := p.wait(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM:\n%s", code, p.stderr.String())
	}
	for _, e := range fastErr {
		// The loops end on the closed listener or a connection closed after
		// its last answer; an error answer from the server is a failure.
		if !isConnError(e) {
			t.Errorf("a looping add failed with an answer: %s", e)
		}
	}
	t.Logf("acknowledged: %d slow adds (%d units of Sencha), %d looping adds of Darjeeling", slowN, slowOK, fastOK)
	if slowN != 20 {
		t.Errorf("%d of the 20 adds in flight at SIGTERM were answered 200", slowN)
	}

	// Restart on the same store: every acknowledged add is there, nothing else.
	p2 := startDemo(t, "demo after restart", args...)
	got := v.on(p2.URL()).basket()
	want := fmt.Sprintf("tea-assam×1,tea-sencha×%d", slowOK)
	if fastOK > 0 {
		want = fmt.Sprintf("tea-assam×1,tea-darjeeling×%d,tea-sencha×%d", fastOK, slowOK)
	}
	if !sameLines(got, want) {
		t.Errorf("basket after restart = %q, want %q", got, want)
	}
	p2.stop()
}

// isConnError reports whether a client error is the connection going away (the
// request never got an answer) rather than an answer from the server.
func isConnError(msg string) bool {
	for _, s := range []string{"connection refused", "connection reset", "EOF", "broken pipe",
		"server closed idle connection", "use of closed network connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// sameLines compares two "sku×qty,..." baskets regardless of order.
func sameLines(a, b string) bool {
	as, bs := strings.Split(a, ","), strings.Split(b, ",")
	if len(as) != len(bs) {
		return false
	}
	seen := map[string]int{}
	for _, s := range as {
		seen[s]++
	}
	for _, s := range bs {
		if seen[s] == 0 {
			return false
		}
		seen[s]--
	}
	return true
}
