package importer_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// Cart is the importer's session-scoped type, with the shapes msgpack allocates
// for: slices, maps of several kinds, a time, an interface.
type Cart struct {
	Items   []Item            `msgpack:"items"`
	Notes   map[string]string `msgpack:"notes"`
	Attrs   map[string]any    `msgpack:"attrs"`
	Counts  map[string][]int  `msgpack:"counts"`
	Updated time.Time         `msgpack:"updated"`
	Extra   any               `msgpack:"extra"`

	clock *Clock // a dependency: never stored, re-injected on load
}

// Item is one line of a Cart.
type Item struct {
	SKU  string          `msgpack:"sku"`
	Qty  int             `msgpack:"qty"`
	Tags map[string]bool `msgpack:"tags"`
}

// Clock is a singleton the Cart depends on.
type Clock struct{ name string }

func NewCart(c *Clock) *Cart { return &Cart{clock: c} }

// destinations are the Go types a stored value and the bag's values are read
// into.
func destinations() []any {
	return []any{
		new(any), new(string), new(int64), new(bool), new([]byte), new(time.Time),
		new([]any), new([]string), new([]int), new([]Item), new([]map[string]any),
		new(map[string]any), new(map[string]string), new(map[string]bool), new(map[int]string),
		new(map[string][]int), new(map[string]map[string]any), new(Item), new(*Item), new(Cart),
	}
}

// env is an fx app with a memory store, one started session holding a value, a
// bag, flashes and a Cart, and the stored fields to overwrite.
type env struct {
	mgr     *session.Manager
	carts   scope.Handle[*Cart]
	clock   *Clock
	records cache.Store // the sessions' namespace: one record per session
	id      string
	ref     string // the session's record key (Session.Ref)

	value, bag, flashes, cart cache.Field
}

func newEnv(t *testing.T) *env {
	t.Helper()
	backend := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = backend.Close() })
	e := &env{}
	app := fxtest.New(t,
		fx.NopLogger,
		fx.Supply(slog.New(slog.DiscardHandler)), // undecodable bytes are logged
		fx.Supply(session.Config{GCInterval: session.Never}),
		fx.Provide(func() cache.Store { return backend }),
		session.Module,
		session.RegisterBag("prefs"),
		fx.Supply(&Clock{name: "the clock"}),
		scope.Provide(NewCart),
		fx.Invoke(func(m *session.Manager, h scope.Handle[*Cart], c *Clock) {
			e.mgr, e.carts, e.clock = m, h, c
		}),
	)
	app.RequireStart()
	t.Cleanup(app.RequireStop)

	// A session started the way an application starts one.
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "value", map[string]any{"k": []any{1, "x"}}); err != nil {
		t.Fatal(err)
	}
	bag, err := s.Bag("prefs")
	if err != nil {
		t.Fatal(err)
	}
	if err := bag.Set(ctx, "lang", "de"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flashes().Add(ctx, "info", "hello"); err != nil {
		t.Fatal(err)
	}
	err = e.carts.Update(ctx, func(c *Cart) error {
		c.Items = append(c.Items, Item{SKU: "tea", Qty: 2, Tags: map[string]bool{"gift": true}})
		c.Notes = map[string]string{"door": "leave it"}
		c.Updated = time.Unix(1_777_000_000, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if e.id, err = s.ID(ctx); err != nil {
		t.Fatal(err)
	}
	if e.ref = s.Ref(); e.ref == "" {
		t.Fatal("a started session without a reference")
	}

	// The session is one record of the manager's namespace, keyed by its
	// reference; its fields are "v:<key>" for values, "b:<bag>" for bags, "f"
	// for the flashes, "e:scope:<type>.<hash>" for session-scoped objects.
	if e.records, err = backend.Sub(session.DefaultNamespace); err != nil {
		t.Fatal(err)
	}
	rec, err := e.records.Read(context.Background(), e.ref)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]*cache.Field{"v:value": &e.value, "b:prefs": &e.bag, "f": &e.flashes, "e:scope:Cart.": &e.cart}
	var names []string
	for _, f := range rec.Fields {
		names = append(names, f.Name)
		for prefix, dst := range found {
			if f.Name == prefix || strings.HasSuffix(prefix, ".") && strings.HasPrefix(f.Name, prefix) {
				if dst.Name != "" {
					t.Fatalf("two stored fields match %q: %q and %q", prefix, dst.Name, f.Name)
				}
				*dst = f
			}
		}
	}
	for prefix, dst := range found {
		if dst.Name == "" {
			t.Fatalf("no stored field matches %q among %q", prefix, names)
		}
	}
	t.Logf("session record %s: value %q, bag %q, flashes %q, object %q", e.ref, e.value.Name, e.bag.Name, e.flashes.Name, e.cart.Name)
	return e
}

// store overwrites the bytes of fields of the session's record, in one write
// through the store (the record's other fields and its tags stay).
func (e *env) store(t *testing.T, b []byte, fields ...cache.Field) {
	t.Helper()
	var w cache.Write
	for _, f := range fields {
		w.Fields = append(w.Fields, cache.Set(f.Name, b))
	}
	if _, err := e.records.Write(context.Background(), e.ref, w); err != nil {
		t.Fatal(err)
	}
}

// feed stores b as the value, the bag, the flashes and the Cart, and reads each
// back through the public API in a new request of the session.
func (e *env) feed(t *testing.T, b []byte) {
	e.store(t, b, e.value, e.bag, e.flashes, e.cart)
	ctx, s := e.mgr.NewContext(context.Background(), e.id)

	for _, dst := range destinations() {
		if err := s.Get(ctx, "value", dst); err != nil && !errors.Is(err, session.ErrDecode) {
			t.Errorf("Session.Get into %T: %v, want nil or ErrDecode", dst, err)
		}
	}

	bag, err := s.Bag("prefs")
	if err != nil {
		t.Fatal(err)
	}
	var lang string
	_ = bag.Get(ctx, "lang", &lang)
	_, _ = bag.Keys(ctx)
	if all, err := bag.All(ctx); err == nil {
		for _, v := range all {
			for _, dst := range destinations() {
				_ = v.Decode(dst)
			}
		}
	}
	_, _ = s.Flashes().Peek(ctx, "info")

	// What does not decode loads as a fresh instance: Get never fails because of
	// what is stored, and the dependency is the container's again.
	c, err := e.carts.Get(ctx)
	if err != nil {
		t.Fatalf("Handle.Get: %v", err)
	}
	if c.clock != e.clock {
		t.Fatal("Handle.Get: dependency not re-injected")
	}
}

// TestHostileStoredBytes feeds every checked-in fuzz seed and crasher of
// fxsession through a session value, a bag, the flashes and a session-scoped
// object. Under TestMain's address-space limit, a path that lets msgpack size
// an allocation from a hostile header kills the test with "out of memory".
func TestHostileStoredBytes(t *testing.T) {
	seeds := loadSeeds(t)
	e := newEnv(t)
	for _, sd := range seeds {
		t.Run(sd.name, func(t *testing.T) { e.feed(t, sd.data) })
	}
	// The session is still usable afterwards.
	e.feed(t, e.cart.Value)
}

type seed struct {
	name string
	data []byte
}

// loadSeeds reads fxsession's checked-in fuzz corpora.
func loadSeeds(t *testing.T) []seed {
	t.Helper()
	var seeds []seed
	for _, dir := range []string{
		"session/testdata/fuzz",
		"inject/testdata/fuzz",
		"scope/testdata/fuzz",
		"internal/msgpackcheck/testdata/fuzz",
		"internal/reliability/testdata/fuzz/FuzzBagDecode",
	} {
		root := filepath.Join("..", "..", filepath.FromSlash(dir))
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			content, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b, err := parseSeed(string(content))
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			rel, _ := filepath.Rel(filepath.Join("..", ".."), path)
			seeds = append(seeds, seed{name: filepath.ToSlash(rel), data: b})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A sanity floor: the corpora held 51 files when this test was written.
	if len(seeds) < 40 {
		t.Fatalf("only %d seed files found", len(seeds))
	}
	t.Logf("%d seed files", len(seeds))
	return seeds
}

// parseSeed reads a file of Go's fuzz corpus format ("go test fuzz v1", then one
// Go literal per argument) and returns its first []byte or string argument.
func parseSeed(content string) ([]byte, error) {
	lines := strings.Split(strings.TrimSpace(content), "\n")
	if strings.TrimSpace(lines[0]) != "go test fuzz v1" {
		return nil, errors.New(`not a fuzz corpus file (no "go test fuzz v1" header)`)
	}
	for _, line := range lines[1:] {
		line = strings.TrimSpace(line)
		for _, typ := range []string{"[]byte(", "string("} {
			if strings.HasPrefix(line, typ) && strings.HasSuffix(line, ")") {
				s, err := strconv.Unquote(line[len(typ) : len(line)-1])
				if err != nil {
					return nil, fmt.Errorf("%s: %w", line, err)
				}
				return []byte(s), nil
			}
		}
	}
	return nil, errors.New("no []byte or string argument")
}

func TestParseSeed(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"go test fuzz v1\n[]byte(\"\\xdf\\xff\\xff\\xff\\xff\")\n", "\xdf\xff\xff\xff\xff"},
		{"go test fuzz v1\n[]byte(\"\\x82\\xa5items\\x95\\\"q\\\\\")\nbool(true)\n", "\x82\xa5items\x95\"q\\"},
		{"go test fuzz v1\nstring(\"fxsession=abc\")\n", "fxsession=abc"},
		{"go test fuzz v1\n[]byte(\"ߛ\")\n", "ߛ"},
		{"go test fuzz v1\n[]byte(`raw\\x`)\n", "raw\\x"},
	} {
		got, err := parseSeed(tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("parseSeed(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "[]byte(\"x\")", "go test fuzz v1\nint(1)\n", "go test fuzz v1\n[]byte(\"\\q\")\n"} {
		if got, err := parseSeed(bad); err == nil {
			t.Errorf("parseSeed(%q) = %q, want an error", bad, got)
		}
	}
}

// TestBuildsAgainstUpstreamMsgpack: this module sees msgpack as any importer
// does, from the module proxy, with no replace (a replace directive of
// fxsession's own go.mod would not apply here). Test binaries carry no module
// list, so ask the go command.
func TestBuildsAgainstUpstreamMsgpack(t *testing.T) {
	// The go command that runs this test: on PATH, or in the GOROOT of the
	// toolchain that built it.
	gocmd, err := exec.LookPath("go")
	if err != nil {
		if gocmd, err = exec.LookPath(filepath.Join(runtime.GOROOT(), "bin", "go")); err != nil {
			t.Fatalf("no go command on PATH or in GOROOT: %v", err)
		}
	}
	out, err := exec.Command(gocmd, "list", "-m", "-f", "{{.Path}} {{.Version}} replace={{.Replace}}",
		"github.com/vmihailenco/msgpack/v5", "github.com/fxsession/fxsession").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "github.com/vmihailenco/msgpack/v5 v5.") ||
		!strings.HasSuffix(lines[0], "replace=<nil>") || strings.HasSuffix(lines[1], "replace=<nil>") {
		t.Fatalf("want upstream msgpack and fxsession from this checkout, go list says:\n%s", out)
	}
	t.Logf("%s", out)
}
