package filestore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// DefaultNamespace is the namespace used when Options.Namespace is empty.
const DefaultNamespace = "default"

// DefaultBatchSize is the batch size used when Options.BatchSize is 0.
const DefaultBatchSize = 1000

const (
	dirPerm  = 0o700
	filePerm = 0o600
	nameLen  = 2 * sha256.Size // a file name: the hex SHA-256 of a key
)

// Options configure a [Store].
type Options struct {
	// Dir is the folder holding the store; required. It is created when
	// missing. A folder the process may only read opens too: reads work, writes
	// fail with an error matching cache.ErrUnavailable.
	Dir string
	// Namespace of the root store; empty means DefaultNamespace.
	Namespace string
	// MaxValueSize is the largest field value accepted; 0 means
	// cache.DefaultMaxValueSize. At most 4 GiB - 1.
	MaxValueSize int
	// BatchSize is how many folder entries Keys, Tagged and CollectGarbage read
	// (and hold in memory) at a time; 0 means DefaultBatchSize.
	BatchSize int
	// Logger receives warnings about corrupt files and garbage collection
	// figures; nil means slog.Default().
	Logger *slog.Logger
}

// Store is one namespace of a file store. It implements [cache.Store].
type Store struct {
	sh      *shared
	ns      string
	dir     string // <Dir>/<namespace folder>
	root    bool
	gcShard atomic.Int64 // where the last CollectGarbage stopped
}

var _ cache.Store = (*Store)(nil)

// shared is what a root store and its Subs have in common.
type shared struct {
	dir      string
	maxValue int
	batch    int
	log      *slog.Logger
	closed   atomic.Bool
	last     atomic.Uint64 // the last version this process handed out
	inproc   keyLocks
	syncFile func(*os.File) error // (*os.File).Sync; tests simulate a full disk
}

// Open opens the store in opts.Dir, creating the folder when it is missing.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("filestore: Options.Dir is required")
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if err := cache.ValidateKey(opts.Namespace); err != nil {
		return nil, fmt.Errorf("filestore: namespace: %w", err)
	}
	if opts.MaxValueSize < 0 || uint64(opts.MaxValueSize) > math.MaxUint32 || opts.BatchSize < 0 {
		return nil, fmt.Errorf("filestore: MaxValueSize %d or BatchSize %d out of range", opts.MaxValueSize, opts.BatchSize)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("filestore: dir %q: %w", opts.Dir, err)
	}
	sh := &shared{
		dir:      dir,
		maxValue: cmp.Or(opts.MaxValueSize, cache.DefaultMaxValueSize),
		batch:    cmp.Or(opts.BatchSize, DefaultBatchSize),
		log:      cmp.Or(opts.Logger, slog.Default()).With("cache", "file", "dir", dir),
		inproc:   keyLocks{m: map[string]*keyLock{}},
		syncFile: (*os.File).Sync,
	}
	s := sh.store(opts.Namespace)
	s.root = true
	if err := s.ensureDir(dir); err != nil {
		return nil, cache.Unavailable("filestore: open", err)
	}
	if !writable(dir) {
		sh.log.Warn("filestore: the folder is not writable: reads work, writes fail")
	}
	return s, nil
}

// Module provides a file [cache.Store] opened with opts (opts.Dir is the
// folder, e.g. "var/sessions") and closes it when the fx app stops.
func Module(opts Options) fx.Option {
	return fx.Module("fxsession.cache.file",
		fx.Provide(func(lc fx.Lifecycle) (cache.Store, error) {
			s, err := Open(opts)
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(s.Close))
			return s, nil
		}),
	)
}

func (sh *shared) store(ns string) *Store {
	return &Store{sh: sh, ns: ns, dir: filepath.Join(sh.dir, folderName(ns))}
}

// Namespace returns the store's full namespace.
func (s *Store) Namespace() string { return s.ns }

// Sub returns the child namespace name: a folder beside this one, sharing this
// store's options. Closing it does nothing; closing the root closes it.
func (s *Store) Sub(name string) (cache.Store, error) {
	if s.sh.closed.Load() {
		return nil, fmt.Errorf("filestore: sub %q: %w", name, cache.ErrClosed)
	}
	full, err := cache.JoinNamespace(s.ns, name)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	return s.sh.store(full), nil
}

// Close marks the root store and its Subs closed; later calls fail with
// cache.ErrClosed. Closing a Sub, or closing twice, does nothing.
func (s *Store) Close() error {
	if s.root {
		s.sh.closed.Store(true)
	}
	return nil
}

// check fails a call on a closed store or an ended context.
func (s *Store) check(ctx context.Context, op string) error {
	if s.sh.closed.Load() {
		return fmt.Errorf("filestore: %s: %w", op, cache.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return cache.Unavailable("filestore: "+op, err)
	}
	return nil
}

// fail wraps an error of the file system (or of a context that ended while
// waiting for a lock): the store is unavailable.
func fail(op, key string, err error) error {
	return cache.Unavailable(fmt.Sprintf("filestore: %s %q", op, key), err)
}

// version returns the version of a write at now of a record whose last version
// was last: above it, and above every version this process handed out.
func (sh *shared) version(last cache.Version, now time.Time) cache.Version {
	for {
		prev := sh.last.Load()
		v := cache.NextVersion(max(last, cache.Version(prev)), now)
		if sh.last.CompareAndSwap(prev, uint64(v)) {
			return v
		}
	}
}

// folderName maps a namespace or tag to a folder name: itself when that is safe
// on every file system (lower case, no leading dot, not too long), otherwise "~"
// and a hash ("~" is not a key character, so the two forms never meet).
func folderName(s string) string {
	safe := len(s) <= 100 && s[0] != '.'
	for i := 0; safe && i < len(s); i++ {
		c := s[i]
		safe = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '@' || c == ':'
	}
	if safe {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "~" + hex.EncodeToString(sum[:20])
}

// fileName is the file name of a key or lock name: its hex SHA-256.
func fileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// isName reports whether name can be a record or lock file name.
func isName(name string) bool { return len(name) == nameLen && isHex(name) }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Store) recordsDir() string          { return filepath.Join(s.dir, "records") }
func (s *Store) shardDir(name string) string { return filepath.Join(s.dir, "records", name[:2]) }
func (s *Store) tagsDir() string             { return filepath.Join(s.dir, "tags") }
func (s *Store) tagDir(tag string) string    { return filepath.Join(s.dir, "tags", folderName(tag)) }
func (s *Store) locksDir() string            { return filepath.Join(s.dir, "locks") }
