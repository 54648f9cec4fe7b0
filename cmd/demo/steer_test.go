package main

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// TestSteerFlags: -max-sessions-per-user, -redis-min-replicas and -otel, with
// their environment variables (the flag wins), their checks and their help.
func TestSteerFlags(t *testing.T) {
	env := map[string]string{"DEMO_MAX_SESSIONS_PER_USER": "3", "DEMO_REDIS_MIN_REPLICAS": "1", "DEMO_STORE": "redis", "DEMO_OTEL": "true"}
	getenv := func(k string) string { return env[k] }
	var stderr bytes.Buffer
	c, err := parseServe(nil, &stderr, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxSessionsPerUser != 3 || c.RedisMinReplicas != 1 || !c.OTel {
		t.Errorf("from the environment: %+v", *c)
	}
	c, err = parseServe([]string{"-max-sessions-per-user", "0", "-redis-min-replicas", "2", "-otel=false"}, &stderr, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxSessionsPerUser != 0 || c.RedisMinReplicas != 2 || c.OTel {
		t.Errorf("flags over the environment: %+v", *c)
	}
	c, err = parseServe(nil, &stderr, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxSessionsPerUser != 0 || c.RedisMinReplicas != 0 || c.OTel {
		t.Errorf("defaults: %+v, want no cap, no durability mode, no telemetry", *c)
	}
	// The sessions commands write to the same store: they take the durability mode.
	c, _, _, err = parseSessions([]string{"list", "-store", "redis", "-redis-min-replicas", "1"}, &stderr, getenv)
	if err != nil || c.RedisMinReplicas != 1 {
		t.Errorf("demo sessions list -redis-min-replicas 1: %v, %+v", err, c)
	}

	for _, tc := range []struct {
		env  map[string]string
		args []string
		msg  string
	}{
		{nil, []string{"serve", "-max-sessions-per-user", "-1"}, "-max-sessions-per-user -1: want 0 (no cap) or more"},
		{nil, []string{"serve", "-max-sessions-per-user", "many"}, `invalid value "many" for flag -max-sessions-per-user`},
		{nil, []string{"serve", "-store", "redis", "-redis-min-replicas", "-2"}, "-redis-min-replicas -2: want 0 (off) or more"},
		{nil, []string{"serve", "-store", "file", "-redis-min-replicas", "1"}, "-redis-min-replicas needs -store redis (it is file)"},
		{nil, []string{"sessions", "list", "-store", "sqlite", "-dsn", "x.db", "-redis-min-replicas", "1"}, "-redis-min-replicas needs -store redis (it is sqlite)"},
		{map[string]string{"DEMO_MAX_SESSIONS_PER_USER": "ten"}, []string{"serve"}, `DEMO_MAX_SESSIONS_PER_USER="ten": want a whole number`},
		{map[string]string{"DEMO_REDIS_MIN_REPLICAS": "x"}, []string{"serve"}, `DEMO_REDIS_MIN_REPLICAS="x": want a whole number`},
		{map[string]string{"DEMO_OTEL": "maybe"}, []string{"serve"}, `DEMO_OTEL="maybe": want true or false`},
	} {
		_, _, err := cli(t, tc.env, tc.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("demo %q (env %v): %v, want the usage error %q", tc.args, tc.env, err, tc.msg)
		}
	}

	_, log, err := cli(t, nil, "serve", "-h")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-max-sessions-per-user", "env DEMO_MAX_SESSIONS_PER_USER", "-redis-min-replicas", "env DEMO_REDIS_MIN_REPLICAS", "-otel", "env DEMO_OTEL", "/metrics"} {
		if !strings.Contains(log, want) {
			t.Errorf("demo serve -h does not document %s:\n%s", want, log)
		}
	}
	_, log, _ = cli(t, nil, "sessions", "-h")
	if !strings.Contains(log, "-redis-min-replicas") {
		t.Errorf("demo sessions -h does not document -redis-min-replicas:\n%s", log)
	}
	for _, flag := range []string{"-max-sessions-per-user", "-otel"} {
		if regexp.MustCompile(`(?m)^\s*` + flag + `\b`).MatchString(log) {
			t.Errorf("demo sessions -h lists %s, a flag of serve:\n%s", flag, log)
		}
	}
}

// TestServeSteering runs "demo serve" as a person would, with -otel, -dev and
// -max-sessions-per-user 1: a second sign-in of one user ends the first
// session, /metrics counts it (fxsession_ metrics through OTel's Prometheus
// exporter), and the debug log shows the lifecycle events (session.Listen) and
// the spans. Without -otel, /metrics has no fxsession_ metric.
func TestServeSteering(t *testing.T) {
	p := startDemo(t, "demo", "-store", "memory", "-catalog", t.TempDir()+"/c.db", "-otel", "-dev", "-max-sessions-per-user", "1")
	first := newVisitor(t, p.URL())
	first.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":1}`)
	first.must(200, "POST", "/api/login", `{"user":"alice","remember":true}`)
	second := newVisitor(t, p.URL())
	second.must(200, "POST", "/api/login", `{"user":"alice"}`)
	first.must(401, "GET", "/api/sessions", "")
	if got := first.basket(); got != "" {
		t.Errorf("the session beyond the cap kept its basket: %q", got)
	}
	if list := second.must(200, "GET", "/api/sessions", ""); strings.Count(list, `"id"`) != 1 {
		t.Errorf("alice's sessions under a cap of 1: %s", list)
	}
	metrics := newVisitor(t, p.URL()).must(200, "GET", "/metrics", "")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^fxsession_sessions_started_total\{[^}]*\} [1-9]`),
		regexp.MustCompile(`(?m)^fxsession_sessions_destroyed_total\{[^}]*reason="cap"[^}]*\} 1$`),
		regexp.MustCompile(`(?m)^target_info\{[^}]*service_name="fxsession-demo"`),
	} {
		if !want.MatchString(metrics) {
			t.Errorf("/metrics lacks %s:\n%.3000s", want, metrics)
		}
	}
	p.stop() // delivers the queued events and flushes the spans
	log := p.stderr.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`level=DEBUG msg="session started" component=sessions session=\S+ reason="" tags=\[user:alice\]`),
		regexp.MustCompile(`level=DEBUG msg="session destroyed" component=sessions session=\S+ reason=cap tags=\[user:alice\]`),
		regexp.MustCompile(`level=DEBUG msg=span component=otel span="POST /api/login" trace=[0-9a-f]{32}`),
		regexp.MustCompile(`level=DEBUG msg=span component=otel span=fxsession\.\S+ trace=[0-9a-f]{32} id=[0-9a-f]{16} duration=\S+ parent=[0-9a-f]{16}`),
	} {
		if !want.MatchString(log) {
			t.Errorf("the debug log lacks %s:\n%s", want, log)
		}
	}

	off := startDemo(t, "demo without -otel", "-store", "memory", "-catalog", t.TempDir()+"/c.db")
	v := newVisitor(t, off.URL())
	v.must(200, "POST", "/api/login", `{"user":"alice"}`)
	if m := newVisitor(t, off.URL()).must(200, "GET", "/metrics", ""); strings.Contains(m, "fxsession_") {
		t.Errorf("/metrics without -otel:\n%.2000s", m)
	}
	off.stop()
	if log := off.stderr.String(); strings.Contains(log, "level=DEBUG") {
		t.Errorf("without -dev the log has debug messages:\n%s", log)
	}
}
