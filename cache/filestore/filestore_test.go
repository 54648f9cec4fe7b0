package filestore_test

import (
	"bytes"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// opener opens every namespace of one test in one folder.
func opener(dir string) cachetest.OpenFunc {
	return func(tb testing.TB, ns string) cache.Backend {
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
	// them lets the file system commit them together.
	cachetest.RunWith(t, "file", opener(t.TempDir()), cachetest.Options{Parallel: true})
}

func BenchmarkFile(b *testing.B) {
	cachetest.Bench(b, opener(b.TempDir()))
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
