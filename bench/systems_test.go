package bench

import (
	"context"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	scsredis "github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// The session key of scs and gorilla, and gorilla's cookie (session) name.
const (
	basketKey  = "basket"
	gorillaKey = "gsession"
)

// hashKey authenticates gorilla's cookies (signed, not encrypted: the
// configuration of gorilla's README).
var hashKey = func() []byte { s := sha256.Sum256([]byte("fxsession bench hash key")); return s[:] }()

// gob needs the concrete types stored in scs's and gorilla's value maps.
func init() { gob.Register(Basket{}) }

// sink keeps the compiler from discarding the read handlers' work.
var sink atomic.Int64

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newRequest returns a prepared request carrying cookie ("" for none).
func newRequest(method, cookie string) *http.Request {
	r, err := http.NewRequest(method, "http://shop.test/basket", nil)
	if err != nil {
		panic(err)
	}
	r.RemoteAddr = "127.0.0.1:50000"
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	return r
}

// serve drives h with r for the benchmark's iterations. fresh gives every
// iteration a shallow copy of r: gorilla/sessions stores its per-request
// registry by overwriting *r, so reusing one request would let it skip all work
// after the first iteration (the copy, one allocation, is charged to gorilla).
func serve(b *testing.B, h http.Handler, r *http.Request, fresh bool) {
	b.Helper()
	w := NewWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		req := r
		if fresh {
			c := *r
			req = &c
		}
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// once runs h once on a request with cookie and returns the writer.
func once(h http.Handler, cookie string) *Writer {
	w := NewWriter()
	h.ServeHTTP(w, newRequest(http.MethodPost, cookie))
	return w
}

// bare is the handler of the no-session benchmarks.
var bare = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(OK) })

// ---- fxsession ----

type fxSystem struct {
	mgr    *session.Manager
	basket scope.Handle[*Basket]
}

// newFx builds the fx app of the benchmarks on store: the session module, the
// pricing singleton, the session-scoped basket and extra options.
func newFx(b testing.TB, store cache.Store, extra ...fx.Option) *fxSystem {
	b.Helper()
	var s fxSystem
	app := fx.New(
		fx.NopLogger,
		fx.Supply(quiet()),
		fx.Supply(session.Config{GCInterval: session.Never, Logger: quiet()}),
		fx.Provide(func() cache.Store { return store }),
		session.Module,
		fx.Provide(NewPricing),
		scope.Provide(NewBasket),
		fx.Options(extra...),
		fx.Populate(&s.mgr),
		fx.Invoke(func(h scope.Handle[*Basket]) { s.basket = h }),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		b.Fatalf("fx start: %v", err)
	}
	b.Cleanup(func() { _ = app.Stop(context.Background()) })
	return &s
}

func newMemory(b testing.TB) cache.Store {
	s := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// start creates a session holding an n-item basket (through the middleware, as
// a visitor's first add would) and returns its cookie. more runs in the same
// request, to store other objects.
func (s *fxSystem) start(b testing.TB, n int, more func(ctx context.Context) error) string {
	b.Helper()
	h := s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.basket.Update(r.Context(), func(bk *Basket) error { bk.Items = Fill(n); return nil })
		if err == nil && more != nil {
			err = more(r.Context())
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(OK)
	}))
	w := once(h, "")
	c := w.SetCookie(session.DefaultCookieName)
	if w.Code != http.StatusOK || c == "" {
		b.Fatalf("fxsession setup: status %d, cookie %q", w.Code, c)
	}
	return c
}

// add is the idiomatic add: an atomic Update.
func (s *fxSystem) add() http.Handler {
	n := 0
	return s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		k := n
		if err := s.basket.Update(r.Context(), func(bk *Basket) error { bk.Rotate(k); return nil }); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(OK)
	}))
}

// addGet is the add through Get and a change in place, written at the commit.
func (s *fxSystem) addGet() http.Handler {
	n := 0
	return s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bk, err := s.basket.Get(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		n++
		bk.Rotate(n)
		_, _ = w.Write(OK)
	}))
}

func (s *fxSystem) read() http.Handler {
	return s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bk, err := s.basket.Get(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sink.Add(bk.Total())
		_, _ = w.Write(OK)
	}))
}

// ---- scs ----

func newScs(store scs.Store) *scs.SessionManager {
	sm := scs.New()
	sm.Store = store
	sm.ErrorFunc = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	return sm
}

func newScsMemory(b testing.TB) *scs.SessionManager {
	st := scsmem.NewWithCleanupInterval(0)
	return newScs(st)
}

func scsStart(b testing.TB, sm *scs.SessionManager, n int) string {
	b.Helper()
	h := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), basketKey, Basket{Items: Fill(n)})
		_, _ = w.Write(OK)
	}))
	w := once(h, "")
	c := w.SetCookie(sm.Cookie.Name)
	if w.Code != http.StatusOK || c == "" {
		b.Fatalf("scs setup: status %d, cookie %q", w.Code, c)
	}
	return c
}

func scsAdd(sm *scs.SessionManager) http.Handler {
	n := 0
	return sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bk, ok := sm.Get(r.Context(), basketKey).(Basket)
		if !ok {
			http.Error(w, "no basket", http.StatusInternalServerError)
			return
		}
		n++
		bk.Rotate(n)
		sm.Put(r.Context(), basketKey, bk)
		_, _ = w.Write(OK)
	}))
}

func scsRead(sm *scs.SessionManager) http.Handler {
	return sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bk, ok := sm.Get(r.Context(), basketKey).(Basket)
		if !ok {
			http.Error(w, "no basket", http.StatusInternalServerError)
			return
		}
		sink.Add(bk.Total())
		_, _ = w.Write(OK)
	}))
}

// ---- gorilla/sessions ----

func newGorillaFS(b testing.TB) sessions.Store {
	st := sessions.NewFilesystemStore(b.TempDir(), hashKey)
	return st
}

func newGorillaCookie() sessions.Store { return sessions.NewCookieStore(hashKey) }

func gorillaStart(b testing.TB, st sessions.Store, n int) string {
	b.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := st.Get(r, gorillaKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.Values[basketKey] = Basket{Items: Fill(n)}
		if err := s.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(OK)
	})
	w := once(h, "")
	c := w.SetCookie(gorillaKey)
	if w.Code != http.StatusOK || c == "" {
		b.Fatalf("gorilla setup: status %d, cookie %q", w.Code, c)
	}
	return c
}

func gorillaAdd(st sessions.Store) http.Handler {
	n := 0
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := st.Get(r, gorillaKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		bk, ok := s.Values[basketKey].(Basket)
		if !ok {
			http.Error(w, "no basket", http.StatusInternalServerError)
			return
		}
		n++
		bk.Rotate(n)
		s.Values[basketKey] = bk
		if err := s.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(OK)
	})
}

func gorillaRead(st sessions.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := st.Get(r, gorillaKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		bk, ok := s.Values[basketKey].(Basket)
		if !ok {
			http.Error(w, "no basket", http.StatusInternalServerError)
			return
		}
		sink.Add(bk.Total())
		_, _ = w.Write(OK)
	})
}

// ---- the floor ----

// floorAdd is the add through a bare handler doing only what no session library
// can avoid: one map read, one msgpack decode, the change, one msgpack encode,
// one map write (under a mutex, as any shared in-memory store needs).
func floorAdd(b testing.TB, n int) http.Handler {
	const key = "session-id"
	var mu sync.Mutex
	initial, err := msgpack.Marshal(&Basket{Items: Fill(n)})
	if err != nil {
		b.Fatal(err)
	}
	m := map[string][]byte{key: initial}
	i := 0
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		data := m[key]
		mu.Unlock()
		var bk Basket
		if err := msgpack.Unmarshal(data, &bk); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		i++
		bk.Rotate(i)
		out, err := msgpack.Marshal(&bk)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		mu.Lock()
		m[key] = out
		mu.Unlock()
		_, _ = w.Write(OK)
	})
}

// floorRead is the read through a bare handler doing only what a session
// library cannot avoid: one map read (under a mutex) and one msgpack decode.
func floorRead(b testing.TB, n int) http.Handler {
	const key = "session-id"
	var mu sync.Mutex
	initial, err := msgpack.Marshal(&Basket{Items: Fill(n)})
	if err != nil {
		b.Fatal(err)
	}
	m := map[string][]byte{key: initial}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		data := m[key]
		mu.Unlock()
		var bk Basket
		if err := msgpack.Unmarshal(data, &bk); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sink.Add(bk.Total())
		_, _ = w.Write(OK)
	})
}

// ---- Redis ----

// roundTrips counts the client's round trips (a command or a pipeline each),
// among them those that write (hold a command outside readOnly), and the
// commands sent. With record set (before the client is used) it also lists
// the round trips' command names.
type roundTrips struct {
	n, writes, cmds atomic.Int64

	record bool
	mu     sync.Mutex
	log    []string
}

// readOnly are the commands that never write, as the stores here use them.
var readOnly = map[string]bool{
	"get": true, "mget": true, "hget": true, "hgetall": true, "hmget": true, "exists": true,
	"ttl": true, "pttl": true, "smembers": true, "sismember": true, "scan": true, "sscan": true,
	"info": true, "ping": true, "hello": true, "client": true, "evalsha_ro": true, "eval_ro": true,
}

func (c *roundTrips) count(cmds ...redis.Cmder) {
	c.n.Add(1)
	c.cmds.Add(int64(len(cmds)))
	for _, cmd := range cmds {
		if !readOnly[strings.ToLower(cmd.Name())] {
			c.writes.Add(1)
			break
		}
	}
	if c.record {
		names := make([]string, len(cmds))
		for i, cmd := range cmds {
			names[i] = strings.ToUpper(cmd.Name())
		}
		entry := strings.Join(names, " ")
		if len(cmds) > 1 {
			entry = "[" + entry + "]"
		}
		c.mu.Lock()
		c.log = append(c.log, entry)
		c.mu.Unlock()
	}
}

// logged returns the round trips' names recorded since the i-th.
func (c *roundTrips) logged(i int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log[i:]...)
}

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.count(cmds...)
		return next(ctx, cmds)
	}
}

// redisEnv is one redis-server and a client counting its round trips; stats
// come from a second client so that they are not counted.
type redisEnv struct {
	client *redis.Client
	admin  *redis.Client
	rt     *roundTrips
	infos  int64 // INFO commands the admin client ran so far
}

// newRedisEnv flushes srv and returns a counting client on it; with record,
// the client also lists its round trips' commands.
func newRedisEnv(b testing.TB, srv *testserver.Redis, record ...bool) *redisEnv {
	b.Helper()
	e := &redisEnv{client: redis.NewClient(srv.Options()), admin: redis.NewClient(srv.Options()), rt: &roundTrips{}}
	e.rt.record = len(record) > 0 && record[0]
	e.client.AddHook(e.rt)
	b.Cleanup(func() { _ = e.client.Close(); _ = e.admin.Close() })
	if err := e.admin.FlushAll(context.Background()).Err(); err != nil {
		b.Fatalf("FLUSHALL: %v", err)
	}
	return e
}

// processed is the server's total_commands_processed (which counts the
// commands Lua scripts run, beside the script call) less the INFO commands
// this env ran before: the difference of two calls is what other clients sent.
func (e *redisEnv) processed(b testing.TB) int64 {
	b.Helper()
	info, err := e.admin.Info(context.Background(), "stats").Result()
	if err != nil {
		b.Fatalf("INFO: %v", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("INFO: %q: %v", line, err)
			}
			n -= e.infos
			e.infos++
			return n
		}
	}
	b.Fatalf("INFO stats has no total_commands_processed")
	return 0
}

// serveRedis is serve plus, per request, the Redis round trips, those of them
// that write, and the commands the server processed (including those run by
// Lua scripts).
func serveRedis(b *testing.B, e *redisEnv, h http.Handler, r *http.Request) {
	b.Helper()
	rt0, wr0, cmd0 := e.rt.n.Load(), e.rt.writes.Load(), e.processed(b)
	serve(b, h, r, false)
	rt1, wr1, cmd1 := e.rt.n.Load(), e.rt.writes.Load(), e.processed(b)
	b.ReportMetric(float64(rt1-rt0)/float64(b.N), "roundtrips/op")
	b.ReportMetric(float64(wr1-wr0)/float64(b.N), "writes/op")
	b.ReportMetric(float64(cmd1-cmd0)/float64(b.N), "rediscmds/op")
}

func newScsRedis(e *redisEnv) *scs.SessionManager { return newScs(scsredis.New(e.client)) }

func newFxRedis(b testing.TB, e *redisEnv) *fxSystem {
	st, err := redisstore.New(e.client, redisstore.Options{Namespace: "bench", Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return newFx(b, st)
}

// ---- many session-scoped types ----

// Extra is a small session-scoped type; Extra[T] for different markers T are
// different types (the 19 others of BenchmarkTouchOneOf20).
type Extra[T any] struct {
	Note  string   `msgpack:"note"`
	Count int      `msgpack:"count"`
	Tags  []string `msgpack:"tags"`
}

func newExtra[T any]() *Extra[T] { return &Extra[T]{} }

type (
	x01 struct{}
	x02 struct{}
	x03 struct{}
	x04 struct{}
	x05 struct{}
	x06 struct{}
	x07 struct{}
	x08 struct{}
	x09 struct{}
	x10 struct{}
	x11 struct{}
	x12 struct{}
	x13 struct{}
	x14 struct{}
	x15 struct{}
	x16 struct{}
	x17 struct{}
	x18 struct{}
	x19 struct{}
)

// extra registers Extra[T] and returns how to store a value in it.
func extra[T any](i int) (fx.Option, func(ctx context.Context) error) {
	var h scope.Handle[*Extra[T]]
	opt := fx.Options(
		scope.Provide(newExtra[T]),
		fx.Invoke(func(hh scope.Handle[*Extra[T]]) { h = hh }),
	)
	fill := func(ctx context.Context) error {
		x, err := h.Get(ctx)
		if err != nil {
			return err
		}
		x.Note = fmt.Sprintf("extra object %d", i)
		x.Count = i
		x.Tags = []string{"a", "b", strconv.Itoa(i)}
		return nil
	}
	return opt, fill
}

// nineteen registers the 19 other types and returns how to fill them all.
func nineteen() (fx.Option, func(ctx context.Context) error) {
	var opts []fx.Option
	var fills []func(ctx context.Context) error
	add := func(o fx.Option, f func(ctx context.Context) error) {
		opts = append(opts, o)
		fills = append(fills, f)
	}
	add(extra[x01](1))
	add(extra[x02](2))
	add(extra[x03](3))
	add(extra[x04](4))
	add(extra[x05](5))
	add(extra[x06](6))
	add(extra[x07](7))
	add(extra[x08](8))
	add(extra[x09](9))
	add(extra[x10](10))
	add(extra[x11](11))
	add(extra[x12](12))
	add(extra[x13](13))
	add(extra[x14](14))
	add(extra[x15](15))
	add(extra[x16](16))
	add(extra[x17](17))
	add(extra[x18](18))
	add(extra[x19](19))
	return fx.Options(opts...), func(ctx context.Context) error {
		for _, f := range fills {
			if err := f(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}
