package filestore_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// opener opens every namespace of one test in one folder.
func opener(dir string) cachetest.OpenFunc {
	return func(tb testing.TB, ns string) cache.Store {
		s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: ns})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) {
	// Parallel: the checks spend their time waiting for fsync; overlapping
	// them lets the file system commit them together. TTL: the expiry checks
	// write a dozen records (two or three fsyncs each) before the first of them
	// may expire; beside the bulk checks on a loaded machine, that takes longer
	// than the default 150 ms.
	cachetest.Run(t, "file", opener(t.TempDir()), cachetest.Options{Parallel: true})
}

func BenchmarkStore(b *testing.B) {
	cachetest.Bench(b, opener(b.TempDir()))
}

func TestModule(t *testing.T) {
	var st cache.Store
	app := fxtest.New(t,
		filestore.Module(filestore.Options{Dir: t.TempDir(), Namespace: "app"}),
		fx.Populate(&st),
	)
	app.RequireStart()
	if st.Namespace() != "app" {
		t.Fatalf("namespace %q", st.Namespace())
	}
	if _, err := st.Write(t.Context(), "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("v"))}}); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()
	if _, err := st.Read(t.Context(), "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Read after the app stopped: %v, want ErrClosed", err)
	}
}

func TestModuleBadOptions(t *testing.T) {
	for _, o := range []filestore.Options{{}, {Dir: t.TempDir(), Namespace: "a b"}, {Dir: t.TempDir(), BatchSize: -1}} {
		app := fx.New(fx.NopLogger, filestore.Module(o), fx.Invoke(func(cache.Store) {}))
		if app.Err() == nil {
			t.Fatalf("fx app with file store options %+v started", o)
		}
	}
}

// lockedBuffer is a child process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
