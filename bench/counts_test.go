package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"

	"github.com/fxsession/fxsession/bench/internal/perfdoc"
	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
	"github.com/fxsession/fxsession/session"
)

// countsOut is where TestRequestCounts writes its counts for cmd/report
// (bench/run.sh passes it).
var countsOut = flag.String("counts", "", "TestRequestCounts writes its counts (perfdoc.Counts, JSON) to this file")

// knownMisses are the count targets the library misses today (scenario ->
// why). TestRequestCounts logs them instead of failing, so that `go test`
// guards every other target; cmd/report marks them missed in
// docs/performance.md.
var knownMisses = map[string]string{}

// TestRequestCounts counts the store round trips of the requests the product
// brief's Redis targets name (issue 12), on fxsession and scs side by side:
// on Redis the client's round trips (a pipeline is one) and commands, on memory
// and file the store calls. Counts, not times: every repetition must cost the
// same. The fxsession rows are checked against perfdoc.CountTargets.
func TestRequestCounts(t *testing.T) {
	var contenders []*contender

	e := newRedisEnv(t, testserver.StartRedis(t), true)
	rs, err := redisstore.New(e.client, redisstore.Options{Namespace: "bench", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	contenders = append(contenders,
		fxContender(t, "redis", rs, &redisMeter{e: e}),
		scsContender(t, "redis", newScsRedis(e), &redisMeter{e: e}))

	mem := &cachetest.Counter{}
	fc := &cachetest.Counter{}
	fs, err := filestore.Open(filestore.Options{Dir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Close() })
	scsStore := &scsCounter{inner: scsmem.NewWithCleanupInterval(0)}
	contenders = append(contenders,
		fxContender(t, "memory", cachetest.Wrap(newMemory(t), mem.Hook), storeMeter{mem}),
		scsContender(t, "memory", newScs(scsStore), scsStore),
		fxContender(t, "file", cachetest.Wrap(fs, fc.Hook), storeMeter{fc}))

	var rows []perfdoc.CountRow
	for _, c := range contenders {
		t.Run(c.system+"-"+c.store, func(t *testing.T) { rows = append(rows, c.run(t, 3)...) })
	}
	if t.Failed() {
		return
	}

	var report strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&report, "%-9s %-7s %-8s %d round trips, %d writes, %d/%d commands: %s\n",
			r.Scenario, r.Store, r.System, r.RoundTrips, r.Writes, r.Commands, r.ServerCommands, r.Calls)
	}
	t.Logf("per request (Redis commands: sent/run by the server):\n%s", report.String())

	for _, tg := range perfdoc.CountTargets {
		for _, r := range rows {
			if r.System != "fxsession" || r.Scenario != tg.Scenario || tg.Met(r) {
				continue
			}
			if why, ok := knownMisses[r.Scenario]; ok {
				t.Logf("target missed (known): %s: %s on %s (%d round trips, %d writes: %s): %s", tg.What, r.Scenario, r.Store, r.RoundTrips, r.Writes, r.Calls, why)
				continue
			}
			t.Errorf("target missed: %s: %s on %s costs %d round trips, %d writes: %s", tg.What, r.Scenario, r.Store, r.RoundTrips, r.Writes, r.Calls)
		}
	}
	if *countsOut != "" {
		b, err := json.MarshalIndent(perfdoc.Counts{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Rows: rows}, "", "  ")
		if err == nil {
			err = os.WriteFile(*countsOut, b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// ---- meters ----

// tally is a store's counters since it was created.
type tally struct {
	roundTrips, writes, cmds, serverCmds int64
	calls                                int // length of the call log
}

// meter reads a store's counters.
type meter interface {
	read(t testing.TB) tally
	// since lists the calls made after tally was read.
	since(from tally) []string
}

// cost is what happened between two tallies.
type cost struct {
	from, to tally
	calls    []string
}

func measure(t testing.TB, m meter, fn func()) cost {
	from := m.read(t)
	fn()
	to := m.read(t)
	return cost{from: from, to: to, calls: m.since(from)}
}

func (c cost) row(scenario, system, store string) perfdoc.CountRow {
	return perfdoc.CountRow{
		Scenario: scenario, System: system, Store: store,
		RoundTrips:     c.to.roundTrips - c.from.roundTrips,
		Writes:         c.to.writes - c.from.writes,
		Commands:       c.to.cmds - c.from.cmds,
		ServerCommands: c.to.serverCmds - c.from.serverCmds,
		Calls:          strings.Join(c.calls, ", "),
	}
}

// redisMeter counts a redisEnv's client.
type redisMeter struct{ e *redisEnv }

func (m *redisMeter) read(t testing.TB) tally {
	rt := m.e.rt
	rt.mu.Lock()
	n := len(rt.log)
	rt.mu.Unlock()
	return tally{roundTrips: rt.n.Load(), writes: rt.writes.Load(), cmds: rt.cmds.Load(), serverCmds: m.e.processed(t), calls: n}
}

func (m *redisMeter) since(from tally) []string { return m.e.rt.logged(from.calls) }

// storeMeter counts the calls reaching a cachetest.Wrap'd store.
type storeMeter struct{ c *cachetest.Counter }

// writeOps are the store operations that change it.
var writeOps = []cachetest.Op{cachetest.OpWrite, cachetest.OpDelete, cachetest.OpDeleteMany, cachetest.OpFlush,
	cachetest.OpCollectGarbage, cachetest.OpLock, cachetest.OpUnlock}

func (m storeMeter) read(testing.TB) tally {
	n := m.c.Count()
	return tally{roundTrips: int64(n), writes: int64(m.c.Count(writeOps...)), calls: n}
}

func (m storeMeter) since(from tally) []string {
	var out []string
	for _, c := range m.c.Calls()[from.calls:] {
		out = append(out, string(c.Op))
	}
	return out
}

// scsCounter is an scs.Store counting the calls it forwards.
type scsCounter struct {
	inner scs.Store
	mu    sync.Mutex
	log   []string
	n     int64
	wr    int64
}

func (s *scsCounter) note(op string, write bool) {
	s.mu.Lock()
	s.log = append(s.log, op)
	s.n++
	if write {
		s.wr++
	}
	s.mu.Unlock()
}

func (s *scsCounter) Find(token string) ([]byte, bool, error) {
	s.note("Find", false)
	return s.inner.Find(token)
}

func (s *scsCounter) Commit(token string, b []byte, expiry time.Time) error {
	s.note("Commit", true)
	return s.inner.Commit(token, b, expiry)
}

func (s *scsCounter) Delete(token string) error {
	s.note("Delete", true)
	return s.inner.Delete(token)
}

func (s *scsCounter) read(testing.TB) tally {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tally{roundTrips: s.n, writes: s.wr, calls: len(s.log)}
}

func (s *scsCounter) since(from tally) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log[from.calls:])
}

// ---- contenders ----

// contender is one system on one store, with the handlers of the scenarios.
type contender struct {
	system, store string
	m             meter
	cookieName    string
	// seed creates a session as the page shows it (a 10-item basket, a user, a
	// preference, a flash message) and returns its cookie; not counted.
	seed                            func(t testing.TB) string
	start, page, add, login, logout http.Handler
	addGet                          http.Handler // fxsession only
	// destroy is the cost of the logout handler's Destroy call alone.
	destroy cost
	// t is the running test, for the handlers' meter reads.
	t testing.TB
}

// pageBody is what the page handlers answer on a seeded session.
const pageBody = "guest dark 10 1"

func fxContender(t *testing.T, store string, st cache.Store, m meter) *contender {
	s := newFx(t, st, session.RegisterBag("prefs"))
	c := &contender{system: "fxsession", store: store, m: m, cookieName: session.DefaultCookieName}
	sess := func(r *http.Request) *session.Session { x, _ := session.FromContext(r.Context()); return x }
	c.seed = func(t testing.TB) string {
		return s.start(t, 10, func(ctx context.Context) error {
			x, _ := session.FromContext(ctx)
			bag, err := x.Bag("prefs")
			if err == nil {
				err = bag.Set(ctx, "theme", "dark")
			}
			return cmp.Or(err, x.Put(ctx, "user", "guest"), x.Flashes().Add(ctx, "notice", "welcome"))
		})
	}
	c.start = s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.basket.Update(r.Context(), func(bk *Basket) error { bk.Items = append(bk.Items, ItemN(1)); return nil })
		respond(w, err)
	}))
	c.page = s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, x := r.Context(), sess(r)
		bk, err := s.basket.Get(ctx)
		var user, theme string
		if err == nil {
			err = x.Get(ctx, "user", &user)
		}
		bag, err2 := x.Bag("prefs")
		if err = cmp.Or(err, err2); err == nil {
			err = bag.Get(ctx, "theme", &theme)
		}
		flashes, err2 := x.Flashes().PeekAll(ctx)
		_, err3 := x.Tags(ctx)
		if err = cmp.Or(err, err2, err3); err != nil {
			respond(w, err)
			return
		}
		fmt.Fprintf(w, "%s %s %d %d", user, theme, len(bk.Items), len(flashes["notice"]))
	}))
	c.add = s.add()
	c.addGet = s.addGet()
	c.login = s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, x := r.Context(), sess(r)
		respond(w, cmp.Or(x.RenewID(ctx), x.Put(ctx, "user", "alice"), x.AddTag(ctx, s.mgr.UserTag("alice"))))
	}))
	c.logout = s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, x := r.Context(), sess(r)
		if ok, err := x.IsStarted(ctx); !ok || err != nil {
			respond(w, cmp.Or(err, fmt.Errorf("logout: no session")))
			return
		}
		var err error
		c.destroy = measure(c.t, c.m, func() { err = x.Destroy(ctx, "") })
		respond(w, err)
	}))
	return c
}

func scsContender(t *testing.T, store string, sm *scs.SessionManager, m meter) *contender {
	c := &contender{system: "scs", store: store, m: m, cookieName: sm.Cookie.Name}
	c.seed = func(t testing.TB) string {
		h := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			sm.Put(ctx, basketKey, Basket{Items: Fill(10)})
			sm.Put(ctx, "user", "guest")
			sm.Put(ctx, "theme", "dark")
			sm.Put(ctx, "flash", "welcome")
			_, _ = w.Write(OK)
		}))
		w := once(h, "")
		ck := w.SetCookie(sm.Cookie.Name)
		if w.Code != http.StatusOK || ck == "" {
			t.Fatalf("scs seed: status %d, cookie %q", w.Code, ck)
		}
		return ck
	}
	c.start = sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), basketKey, Basket{Items: []Item{ItemN(1)}})
		respond(w, nil)
	}))
	c.page = sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		bk, _ := sm.Get(ctx, basketKey).(Basket)
		flashes := 0
		if sm.GetString(ctx, "flash") != "" { // shown, not popped: a pop would write
			flashes = 1
		}
		fmt.Fprintf(w, "%s %s %d %d", sm.GetString(ctx, "user"), sm.GetString(ctx, "theme"), len(bk.Items), flashes)
	}))
	c.add = scsAdd(sm)
	c.login = sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := sm.RenewToken(r.Context())
		if err == nil {
			sm.Put(r.Context(), "user", "alice")
		}
		respond(w, err)
	}))
	c.logout = sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		c.destroy = measure(c.t, c.m, func() { err = sm.Destroy(r.Context()) })
		respond(w, err)
	}))
	return c
}

// recorder is a Writer that keeps the body.
type recorder struct {
	*Writer
	body []byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.body = append(r.body, p...)
	return r.Writer.Write(p)
}

func respond(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(OK)
}

// run counts every scenario: one warm-up (Redis loads its scripts), then reps
// repetitions that must cost the same.
func (c *contender) run(t *testing.T, reps int) []perfdoc.CountRow {
	c.t = t
	type scenario struct {
		name  string
		h     http.Handler
		seed  bool // on a seeded session (otherwise without a cookie)
		check func(w *recorder, cookie string) error
	}
	status := func(w *recorder) error {
		if w.Code != http.StatusOK {
			return fmt.Errorf("status %d", w.Code)
		}
		return nil
	}
	scenarios := []scenario{
		{"start", c.start, false, func(w *recorder, _ string) error {
			if w.SetCookie(c.cookieName) == "" {
				return fmt.Errorf("no session cookie sent")
			}
			return status(w)
		}},
		{"page", c.page, true, func(w *recorder, _ string) error {
			if got := string(w.body); got != pageBody {
				return fmt.Errorf("page %q, want %q", got, pageBody)
			}
			if ck := w.SetCookie(c.cookieName); ck != "" {
				return fmt.Errorf("the page sent Set-Cookie %q", ck)
			}
			return status(w)
		}},
		{"add", c.add, true, func(w *recorder, _ string) error { return status(w) }},
		{"add-get", c.addGet, true, func(w *recorder, _ string) error { return status(w) }},
		{"login", c.login, true, func(w *recorder, old string) error {
			if ck := w.SetCookie(c.cookieName); ck == "" || ck == old {
				return fmt.Errorf("login sent cookie %q (was %q): want a new ID", ck, old)
			}
			return status(w)
		}},
		{"logout", c.logout, true, func(w *recorder, _ string) error {
			if !strings.Contains(strings.Join(w.H.Values("Set-Cookie"), "\n"), "Max-Age=0") {
				return fmt.Errorf("logout did not expire the cookie: %q", w.H.Values("Set-Cookie"))
			}
			return status(w)
		}},
	}
	var rows []perfdoc.CountRow
	for _, sc := range scenarios {
		if sc.h == nil {
			continue
		}
		var got, destroyed []perfdoc.CountRow
		for rep := 0; rep <= reps; rep++ {
			cookie := ""
			if sc.seed {
				cookie = c.seed(t)
			}
			w := &recorder{Writer: NewWriter()}
			k := measure(t, c.m, func() { sc.h.ServeHTTP(w, newRequest(http.MethodPost, cookie)) })
			if err := sc.check(w, cookie); err != nil {
				t.Fatalf("%s: %s: %v (body %q)", c.system, sc.name, err, w.body)
			}
			if rep == 0 {
				continue // warm-up
			}
			got = append(got, k.row(sc.name, c.system, c.store))
			if sc.name == "logout" {
				destroyed = append(destroyed, c.destroy.row("destroy", c.system, c.store))
			}
		}
		for _, rs := range [][]perfdoc.CountRow{got, destroyed} {
			if len(rs) == 0 {
				continue
			}
			for _, r := range rs[1:] {
				if r != rs[0] {
					t.Errorf("%s %s: the repetitions cost differently: %+v and %+v", c.system, rs[0].Scenario, rs[0], r)
				}
			}
			rows = append(rows, rs[0])
		}
	}
	return rows
}
