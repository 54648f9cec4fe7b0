package app_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/internal/testserver"
)

// metricLine matches a sample of fxsession's metrics in Prometheus text.
var metricLine = regexp.MustCompile(`(?m)^fxsession_\w+`)

// TestMetrics: GET /metrics serves Prometheus text either way, without
// touching a session; with -otel it carries fxsession's metrics (through
// OTel's Prometheus exporter) and the demo's service name, without it none.
func TestMetrics(t *testing.T) {
	for _, otel := range []bool{false, true} {
		name := "off"
		if otel {
			name = "on"
		}
		t.Run(name, func(t *testing.T) {
			ts := shop(t, &app.Config{Store: "memory", OTel: otel})
			c := newClient(t, ts.URL)
			c.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":1}`)
			c.must(200, "POST", "/api/login", `{"user":"alice"}`)
			c.must(200, "GET", "/api/basket", "")
			c.must(200, "GET", "/basket", "")

			scraper := newClient(t, ts.URL)
			res, body := scraper.do("GET", "/metrics", "")
			expect(t, res, body, 200)
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("/metrics Content-Type %q, want Prometheus text", ct)
			}
			if len(res.Header.Values("Set-Cookie")) > 0 || res.Header.Get("Cache-Control") == "private" || scraper.cookie() != "" {
				t.Error("/metrics touched a session")
			}
			names := metricLine.FindAllString(body, -1)
			if !otel {
				if len(names) > 0 || strings.Contains(body, "target_info") {
					t.Errorf("without -otel /metrics has metrics: %q\n%.2000s", names, body)
				}
				return
			}
			for _, want := range []string{
				"fxsession_sessions_started_total", "fxsession_sessions_resumed_total", "fxsession_commits_total",
				"fxsession_store_duration_seconds_bucket",
			} {
				if !strings.Contains(body, "\n"+want) {
					t.Errorf("with -otel /metrics lacks %s:\n%.3000s", want, body)
				}
			}
			if !regexp.MustCompile(`(?m)^target_info\{.*service_name="` + app.ServiceName + `"`).MatchString(body) {
				t.Errorf("with -otel /metrics does not name the service %q:\n%.3000s", app.ServiceName, body)
			}
		})
	}
}

// TestDurabilityMode: -redis-min-replicas N makes every session write wait
// for N replicas: with a replica in sync the shop works; asking for more
// replicas than acknowledge fails the write with a 503 instead of keeping a
// write a failover could lose.
func TestDurabilityMode(t *testing.T) {
	master, replica := testserver.StartRedis(t), testserver.StartRedis(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	host, port, _ := strings.Cut(master.Addr(), ":")
	if err := replica.Client().ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	for {
		info, err := master.Client().Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the replica did not come online: %v\n%s", err, info)
		case <-time.After(50 * time.Millisecond):
		}
	}

	// One replica asked for, one in sync: the shop works. (The replica has up
	// to half the read timeout to acknowledge: 3 s, for a loaded machine.)
	ts := shop(t, &app.Config{Store: "redis", RedisURL: master.URL() + "?read_timeout=6s", RedisMinReplicas: 1, Namespace: "durable"})
	c := newClient(t, ts.URL)
	c.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
	c.must(200, "POST", "/api/login", `{"user":"alice","remember":true}`)
	if got := c.basket(); got != "tea-sencha×2" {
		t.Fatalf("basket in durability mode: %q", got)
	}

	// Two asked for, one there: writes fail with 503 (after 500 ms, half the
	// default read timeout), reads still work.
	strict := shop(t, &app.Config{Store: "redis", RedisURL: master.URL(), RedisMinReplicas: 2, Namespace: "durable"})
	s := c.on(strict.URL)
	res, body := s.do("POST", "/api/basket/items", `{"sku":"tea-assam","qty":1}`)
	expect(t, res, body, http.StatusServiceUnavailable)
	if decode[map[string]string](t, body)["error"] == "" {
		t.Errorf("503 body %q is not the API's JSON error", body)
	}
	res, body = newClient(t, strict.URL).do("POST", "/api/basket/items", `{"sku":"tea-assam","qty":1}`)
	expect(t, res, body, http.StatusServiceUnavailable)
	// (A write the replicas did not acknowledge may still have reached the
	// master, so the basket may hold the refused add: only reads are checked.)
	s.must(200, "GET", "/api/basket", "")
	s.must(200, "GET", "/healthz", "")
}

// on returns a client with the same cookie jar talking to another server.
func (c *client) on(base string) *client {
	other := *c
	other.base = base
	return &other
}
