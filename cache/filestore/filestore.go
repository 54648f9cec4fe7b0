// Package filestore is the default, persistent [cache.Backend]: one file per
// entry under a folder, safe against crashes and shared correctly by several
// processes on one machine.
//
// # Layout
//
// Every namespace has its own folder under Options.Dir (its name when it is made
// of lower-case letters, digits and "-_.@" and does not start with a dot,
// otherwise "~" and a hash of it):
//
//	<Dir>/<namespace>/entries/<xx>/<sha256(key) in hex>   one file per entry; xx: its first 2 hex digits
//	<Dir>/<namespace>/tags/<tag>/<sha256(key) in hex>     tag index: empty marker files
//	<Dir>/<namespace>/locks/<xx>                          OS lock files (flock), one per shard
//	<Dir>/<namespace>/mutex/<sha256(name) in hex>         owners of the locks taken with Lock
//
// An entry file holds a header (version, expiry, key, tags, each checksummed)
// and the value with its own checksum. A file that fails its checksum or does
// not decode is treated as absent and logged as a warning; garbage collection
// moves it aside (".corrupt-" prefix) for inspection.
//
// # Durability and concurrency
//
// Every write goes to a temporary file in the entry's folder, is fsynced,
// renamed over the entry and the folder is fsynced, so a crash leaves either
// the old or the new entry, never a torn one; a failed write leaves the old
// entry intact. Writes of one shard (Set, CompareAndSet, Delete, Lock, Unlock,
// and the per-entry steps of FlushByTag and CollectGarbage) hold that shard's
// OS file lock for the read-compare-write, so processes sharing the folder
// never lose an update; Flush holds every shard's lock. Reads take no lock.
//
// The entries are the truth; the tag index only points at them. A marker is
// written (and fsynced, the first time) before its entry, and removed after
// its entry, so after a crash the index may hold stale markers but never misses
// a tagged entry. Stale markers are ignored and removed when Tagged or
// FlushByTag meets them.
//
// # Garbage collection
//
// Expired entries are never returned. [Store.CollectGarbage] removes at most
// Options.GCBatch of them per call (a bounded amount of work per run), resuming
// its walk where the previous call stopped; call it again while it returns
// GCBatch. It also removes expired lock files, stray temporary files older than
// an hour and quarantined corrupt files older than a week.
package filestore

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// DefaultGCBatch is the most expired entries one CollectGarbage call removes
// when Options.GCBatch is 0.
const DefaultGCBatch = 1000

// DefaultNamespace is the namespace used when Options.Namespace is empty.
const DefaultNamespace = "default"

const (
	shards      = 256
	tmpPrefix   = ".tmp-"
	badPrefix   = ".corrupt-"
	flushPrefix = ".flush-"
	tmpMaxAge   = time.Hour
	badMaxAge   = 7 * 24 * time.Hour
	headerPeek  = 1024
	dirPerm     = 0o700
	lockPerm    = 0o600
	readDirSize = 512
)

// Options configure a [Store].
type Options struct {
	// Dir is the folder holding the store; required. It is created when missing.
	Dir string
	// Namespace of the root store; empty means DefaultNamespace.
	Namespace string
	// MaxValueSize is the largest value accepted; 0 means cache.DefaultMaxValueSize.
	MaxValueSize int
	// Logger receives warnings about corrupt files; nil means slog.Default().
	Logger *slog.Logger
	// GCBatch is the most expired entries one CollectGarbage call removes;
	// 0 means DefaultGCBatch.
	GCBatch int
}

// Store is one namespace of a file store. It implements [cache.Backend].
type Store struct {
	sh   *shared
	ns   string
	dir  string // <Dir>/<namespace folder>
	root bool
	// gcShard is the shard where the last CollectGarbage stopped.
	gcShard atomic.Uint32
}

var _ cache.Backend = (*Store)(nil)

// shared is what a root store and its Subs have in common.
type shared struct {
	dir      string
	maxValue int
	gcBatch  int
	log      *slog.Logger
	closed   atomic.Bool
	// stripes serialise this process's goroutines per shard before they take
	// the shard's OS lock (which only excludes other open files).
	stripes [shards]chan struct{}
	// syncFile is f.Sync; tests replace it to simulate a full disk.
	syncFile func(f *os.File) error
}

// Open opens (creating when needed) the store in opts.Dir and checks that the
// folder is writable.
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
	if opts.MaxValueSize <= 0 {
		opts.MaxValueSize = cache.DefaultMaxValueSize
	}
	if opts.GCBatch <= 0 {
		opts.GCBatch = DefaultGCBatch
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("filestore: dir %q: %w", opts.Dir, err)
	}
	sh := &shared{
		dir:      dir,
		maxValue: opts.MaxValueSize,
		gcBatch:  opts.GCBatch,
		log:      opts.Logger.With("cache", "file", "dir", dir),
		syncFile: (*os.File).Sync,
	}
	for i := range sh.stripes {
		sh.stripes[i] = make(chan struct{}, 1)
	}
	s := sh.store(opts.Namespace)
	s.root = true
	// Prove the folder writable now rather than on the first request.
	if err := os.MkdirAll(s.dir, dirPerm); err != nil {
		return nil, cache.Unavailable("filestore: open", err)
	}
	f, err := os.CreateTemp(s.dir, tmpPrefix+"probe-*")
	if err != nil {
		return nil, cache.Unavailable("filestore: open", err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return nil, cache.Unavailable("filestore: open", err)
	}
	return s, nil
}

// Module provides a file [cache.Backend] opened with opts (opts.Dir is the
// folder, e.g. "var/sessions") and closes it when the fx app stops.
func Module(opts Options) fx.Option {
	return fx.Module("fxsession.cache.file",
		fx.Provide(func(lc fx.Lifecycle) (cache.Backend, error) {
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

// folderName maps a namespace or tag to a folder name: itself when that is safe
// on every file system (lower case, no leading dot, short), otherwise "~" and a
// hash ("~" is not a key character, so the two forms never meet).
func folderName(s string) string {
	safe := len(s) <= 100 && s[0] != '.'
	for i := 0; safe && i < len(s); i++ {
		c := s[i]
		safe = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '@'
	}
	if safe {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "~" + hex.EncodeToString(sum[:20])
}

// fileName is the file name of key: the hex SHA-256 of the key.
func fileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func isFileName(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func shardOf(name string) int {
	n, _ := strconv.ParseUint(name[:2], 16, 8)
	return int(n)
}

func (s *Store) entriesDir() string          { return filepath.Join(s.dir, "entries") }
func (s *Store) shardDir(name string) string { return filepath.Join(s.dir, "entries", name[:2]) }
func (s *Store) entryPath(name string) string {
	return filepath.Join(s.dir, "entries", name[:2], name)
}
func (s *Store) tagDir(tag string) string { return filepath.Join(s.dir, "tags", folderName(tag)) }
func (s *Store) mutexPath(name string) string {
	return filepath.Join(s.dir, "mutex", name)
}

// check reports a closed store or an ended context.
func (s *Store) check(ctx context.Context, op string) error {
	if s.sh.closed.Load() {
		return fmt.Errorf("filestore: %s: %w", op, cache.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("filestore: %s: %w", op, err)
	}
	return nil
}

// fsErr wraps a file system error as unavailable (os errors carry the path).
func fsErr(op string, err error) error {
	return cache.Unavailable("filestore: "+op, err)
}

func newVersion() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// lockShard takes shard i: first for this process (a channel, so that waiting
// honours ctx), then its OS file lock, polling while another process holds it.
// The returned function releases both.
func (s *Store) lockShard(ctx context.Context, i int) (func(), error) {
	release, err := s.queueShard(ctx, i)
	if err != nil {
		return nil, err
	}
	unlock, err := s.flockShard(ctx, i)
	if err != nil {
		release()
		return nil, err
	}
	return func() { unlock(); release() }, nil
}

// queueShard takes shard i for this process only.
func (s *Store) queueShard(ctx context.Context, i int) (func(), error) {
	select {
	case s.sh.stripes[i] <- struct{}{}:
		return func() { <-s.sh.stripes[i] }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("filestore: waiting for shard lock: %w", ctx.Err())
	}
}

// flockShard takes the OS file lock of shard i; the caller has queued for it.
func (s *Store) flockShard(ctx context.Context, i int) (func(), error) {
	path := filepath.Join(s.dir, "locks", fmt.Sprintf("%02x", i))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, lockPerm)
	if errors.Is(err, fs.ErrNotExist) {
		if err = s.ensureDir(filepath.Dir(path)); err == nil {
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, lockPerm)
		}
	}
	if err != nil {
		return nil, fsErr("lock", err)
	}
	pause := 20 * time.Microsecond
	for {
		ok, err := tryFlock(f)
		if err != nil {
			f.Close()
			return nil, fsErr("lock", err)
		}
		if ok {
			return func() {
				_ = funlock(f)
				f.Close()
			}, nil
		}
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("filestore: waiting for %s: %w", path, ctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, 5*time.Millisecond)
	}
}

// withShard runs fn holding the lock of the shard of file name.
func (s *Store) withShard(ctx context.Context, name string, fn func() error) error {
	unlock, err := s.lockShard(ctx, shardOf(name))
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// ensureDir creates dir and the missing folders above it, fsyncing each parent
// of a created folder so that the new folders survive a crash.
func (s *Store) ensureDir(dir string) error {
	var created []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		created = append(created, d)
		if d == s.sh.dir || filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type syncMode int

const (
	syncAll  syncMode = iota // fsync the file and its folder
	syncFile                 // fsync the file; the caller fsyncs the folder
	syncNone                 // no fsync (lock owner files)
)

// writeFile atomically replaces dir/name with data: a temporary file in dir,
// written, fsynced, renamed over the target, and the folder fsynced. On failure
// the temporary file is removed and the old file is untouched.
func (s *Store) writeFile(dir, name string, data []byte, mode syncMode) error {
	for attempt := 0; ; attempt++ {
		err := s.writeFileOnce(dir, name, data, mode)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 2 {
			return err
		}
		if err := s.ensureDir(dir); err != nil {
			return err
		}
	}
}

func (s *Store) writeFileOnce(dir, name string, data []byte, mode syncMode) (err error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if mode != syncNone {
		if err = s.sh.syncFile(f); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	if mode == syncAll {
		return syncDir(dir)
	}
	return nil
}

// readHeader reads the header of the entry file called name. It returns
// (nil, nil) when the file is missing or corrupt (logged).
func (s *Store) readHeader(name string) (*record, error) {
	path := s.entryPath(name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf [headerPeek]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	r, err := decodeHeader(buf[:n])
	if errors.Is(err, errShort) && n == headerPeek {
		// A header longer than the peek (many tags): read the whole file.
		var data []byte
		if data, err = os.ReadFile(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, err
		}
		r, err = decodeHeader(data)
	}
	if err == nil && fileName(r.key) != name {
		err = fmt.Errorf("%w: holds key %q, which belongs elsewhere", errCorrupt, r.key)
	}
	if err != nil {
		s.corrupt(path, err)
		return nil, nil
	}
	return &r, nil
}

// readEntry reads and checks the whole entry file called name. It returns
// (nil, nil) when the file is missing or corrupt (logged).
func (s *Store) readEntry(name string) (*record, error) {
	path := s.entryPath(name)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r, err := decodeEntry(data)
	if err == nil && fileName(r.key) != name {
		err = fmt.Errorf("%w: holds key %q, which belongs elsewhere", errCorrupt, r.key)
	}
	if err != nil {
		s.corrupt(path, err)
		return nil, nil
	}
	return &r, nil
}

func (s *Store) corrupt(path string, err error) {
	s.sh.log.Warn("filestore: corrupt entry file treated as absent", "path", path, "error", err)
}

func (r *record) export() cache.Entry {
	e := cache.Entry{Key: r.key, Value: r.value, Tags: r.tags, Version: cache.Version(r.version)}
	if e.Value == nil {
		e.Value = []byte{}
	}
	if r.expires != 0 {
		e.Expires = time.Unix(0, r.expires)
	}
	return e
}

// Namespace returns the store's full namespace.
func (s *Store) Namespace() string { return s.ns }

// Get reads one entry.
func (s *Store) Get(ctx context.Context, key string) (cache.Entry, error) {
	if err := cache.ValidateKey(key); err != nil {
		return cache.Entry{}, err
	}
	if err := s.check(ctx, "get"); err != nil {
		return cache.Entry{}, err
	}
	r, err := s.readEntry(fileName(key))
	if err != nil {
		return cache.Entry{}, fsErr("get", err)
	}
	if r == nil || r.expired(time.Now().UnixNano()) {
		return cache.Entry{}, fmt.Errorf("filestore: get %q: %w", key, cache.ErrNotFound)
	}
	return r.export(), nil
}

// GetMany reads many entries; missing ones come back with only Key set.
func (s *Store) GetMany(ctx context.Context, keys []string) ([]cache.Entry, error) {
	for _, k := range keys {
		if err := cache.ValidateKey(k); err != nil {
			return nil, err
		}
	}
	if err := s.check(ctx, "get many"); err != nil {
		return nil, err
	}
	out := make([]cache.Entry, len(keys))
	now := time.Now().UnixNano()
	for i, k := range keys {
		r, err := s.readEntry(fileName(k))
		if err != nil {
			return nil, fsErr("get many", err)
		}
		if r == nil || r.expired(now) {
			out[i] = cache.Entry{Key: k}
			continue
		}
		out[i] = r.export()
	}
	return out, nil
}

// Has reports whether an unexpired, intact entry exists (it reads the whole
// file, so that Has and Get agree about a damaged value).
func (s *Store) Has(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	if err := s.check(ctx, "has"); err != nil {
		return false, err
	}
	r, err := s.readEntry(fileName(key))
	if err != nil {
		return false, fsErr("has", err)
	}
	return r != nil && !r.expired(time.Now().UnixNano()), nil
}

// Set writes an entry and returns its new version.
func (s *Store) Set(ctx context.Context, it cache.Item) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.sh.maxValue); err != nil {
		return 0, err
	}
	if err := s.check(ctx, "set"); err != nil {
		return 0, err
	}
	return s.write(ctx, it, nil, syncAll)
}

// setManyWorkers is how many writers SetMany runs at once: fsyncs of
// different files overlap, and the file system commits them together.
const setManyWorkers = 8

// SetMany writes many entries, each atomically, several at a time (entries of
// one shard, hence of one key, in their order), fsyncing every touched folder
// once at the end. It is not atomic across keys: after an error, some items
// may have been written.
func (s *Store) SetMany(ctx context.Context, items []cache.Item) error {
	for _, it := range items {
		if err := cache.ValidateItem(it, s.sh.maxValue); err != nil {
			return err
		}
	}
	if err := s.check(ctx, "set many"); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	workers := min(setManyWorkers, len(items))
	queues := make([][]int, workers)
	for i, it := range items {
		w := shardOf(fileName(it.Key)) % workers
		queues[w] = append(queues[w], i)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	for _, q := range queues {
		wg.Go(func() {
			dirs := map[string]bool{}
			for _, i := range q {
				if err := s.check(wctx, "set many"); err != nil {
					fail(err)
					return
				}
				if _, err := s.write(wctx, items[i], nil, syncFile); err != nil {
					fail(err)
					return
				}
				dirs[s.shardDir(fileName(items[i].Key))] = true
			}
			for d := range dirs {
				if err := syncDir(d); err != nil {
					fail(fsErr("set many", err))
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// CompareAndSet writes it when the stored version equals expected (0: absent
// or expired), holding the shard's OS file lock for the read-compare-write.
func (s *Store) CompareAndSet(ctx context.Context, it cache.Item, expected cache.Version) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.sh.maxValue); err != nil {
		return 0, err
	}
	if err := s.check(ctx, "compare and set"); err != nil {
		return 0, err
	}
	// Fast path without the lock: versions are never reused, so a version
	// other than expected seen now means the call conflicts (it is linearised
	// at this read). A match is checked again under the lock.
	name := fileName(it.Key)
	r, err := s.readHeader(name)
	if err != nil {
		return 0, fsErr("compare and set", err)
	}
	var cur cache.Version
	if r != nil && !r.expired(time.Now().UnixNano()) {
		cur = cache.Version(r.version)
	}
	if cur != expected {
		return 0, conflict(it.Key, expected, cur)
	}
	return s.write(ctx, it, &expected, syncAll)
}

func conflict(key string, expected, found cache.Version) error {
	return fmt.Errorf("filestore: compare and set %q: expected version %d, found %d: %w", key, expected, found, cache.ErrConflict)
}

// write stores it under the shard lock; with expected set, only when the stored
// version matches.
func (s *Store) write(ctx context.Context, it cache.Item, expected *cache.Version, mode syncMode) (cache.Version, error) {
	name := fileName(it.Key)
	tags := dedupe(it.Tags)
	var v cache.Version
	i := shardOf(name)
	release, err := s.queueShard(ctx, i)
	if err != nil {
		return 0, err
	}
	defer release()
	check := func() (*record, error) {
		old, err := s.readHeader(name)
		if err != nil {
			return nil, fsErr("write", err)
		}
		if expected != nil {
			var cur cache.Version
			if old != nil && !old.expired(time.Now().UnixNano()) {
				cur = cache.Version(old.version)
			}
			if cur != *expected {
				return nil, conflict(it.Key, *expected, cur)
			}
		}
		return old, nil
	}
	if expected != nil {
		// A goroutine ahead in this process's queue may have moved the version
		// already: conflict without touching the OS lock.
		if _, err := check(); err != nil {
			return 0, err
		}
	}
	unlock, err := s.flockShard(ctx, i)
	if err != nil {
		return 0, err
	}
	defer unlock()
	err = func() error {
		old, err := check()
		if err != nil {
			return err
		}
		now := time.Now()
		r := record{key: it.Key, tags: tags, version: newVersion(), value: it.Value}
		if it.TTL > 0 {
			r.expires = now.Add(it.TTL).UnixNano()
		}
		data, err := encodeEntry(r)
		if err != nil {
			return err
		}
		if err := s.addMarkers(tags, name); err != nil {
			return fsErr("write tag index", err)
		}
		if err := s.writeFile(s.shardDir(name), name, data, mode); err != nil {
			return fsErr("write", err)
		}
		if old != nil {
			for _, t := range old.tags {
				if !slices.Contains(tags, t) {
					s.removeMarker(t, name)
				}
			}
		}
		v = cache.Version(r.version)
		return nil
	}()
	return v, err
}

func dedupe(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// addMarkers makes sure every tag's folder holds a marker for the entry file
// name; the folders that got a new marker are fsynced before the entry is
// written, so that the index never misses an entry after a crash.
func (s *Store) addMarkers(tags []string, name string) error {
	for _, t := range tags {
		dir := s.tagDir(t)
		for attempt := 0; ; attempt++ {
			f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, lockPerm)
			if err == nil {
				if err = f.Close(); err == nil {
					err = syncDir(dir)
				}
				if err != nil {
					return err
				}
				break
			}
			if errors.Is(err, fs.ErrExist) {
				break
			}
			if !errors.Is(err, fs.ErrNotExist) || attempt == 2 {
				return err
			}
			if err := s.ensureDir(dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeMarker removes the marker of entry file name under tag; a failure only
// leaves a stale marker, which readers ignore.
func (s *Store) removeMarker(tag, name string) {
	err := os.Remove(filepath.Join(s.tagDir(tag), name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.sh.log.Warn("filestore: could not remove tag marker", "tag", tag, "error", err)
	}
}

// removeEntry removes the entry file called name (whose header is r, nil when
// unknown) and its markers; the caller holds the shard lock.
func (s *Store) removeEntry(name string, r *record) (bool, error) {
	err := os.Remove(s.entryPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if r != nil {
		for _, t := range r.tags {
			s.removeMarker(t, name)
		}
	}
	return true, nil
}

// Delete removes an entry and reports whether an unexpired one was there.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	if err := s.check(ctx, "delete"); err != nil {
		return false, err
	}
	name := fileName(key)
	var live bool
	err := s.withShard(ctx, name, func() error {
		r, err := s.readEntry(name)
		if err != nil {
			return fsErr("delete", err)
		}
		hdr := r
		if hdr == nil {
			// A damaged value may still have a readable header naming its tags.
			if hdr, err = s.readHeader(name); err != nil {
				return fsErr("delete", err)
			}
		}
		removed, err := s.removeEntry(name, hdr)
		if err != nil {
			return fsErr("delete", err)
		}
		if !removed {
			return nil
		}
		if err := syncDir(s.shardDir(name)); err != nil {
			return fsErr("delete", err)
		}
		live = r != nil && !r.expired(time.Now().UnixNano())
		return nil
	})
	return live, err
}

// Flush removes every entry and the tag index of this namespace, holding every
// shard's lock. The folders are renamed aside first, so the namespace empties
// at once; a crash while deleting leaves ".flush-" folders that garbage
// collection removes. Locks taken with Lock stay.
func (s *Store) Flush(ctx context.Context) error {
	if err := s.check(ctx, "flush"); err != nil {
		return err
	}
	var unlocks []func()
	defer func() {
		for _, u := range slices.Backward(unlocks) {
			u()
		}
	}()
	for i := range shards {
		u, err := s.lockShard(ctx, i)
		if err != nil {
			return err
		}
		unlocks = append(unlocks, u)
	}
	var trash []string
	for _, sub := range []string{"tags", "entries"} {
		dst := filepath.Join(s.dir, flushPrefix+sub+"-"+strconv.FormatUint(rand.Uint64(), 36))
		err := os.Rename(filepath.Join(s.dir, sub), dst)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fsErr("flush", err)
		}
		trash = append(trash, dst)
	}
	if len(trash) == 0 {
		return nil
	}
	if err := syncDir(s.dir); err != nil {
		return fsErr("flush", err)
	}
	for _, d := range trash {
		if err := os.RemoveAll(d); err != nil {
			s.sh.log.Warn("filestore: flush could not remove the old folder; garbage collection will", "path", d, "error", err)
		}
	}
	return nil
}

// markers streams the marker names of tag in batches.
func (s *Store) markers(tag string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		d, err := os.Open(s.tagDir(tag))
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err != nil {
			yield("", err)
			return
		}
		defer d.Close()
		for {
			names, err := d.Readdirnames(readDirSize)
			for _, n := range names {
				if isFileName(n) && !yield(n, nil) {
					return
				}
			}
			if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
				return
			}
			if err != nil {
				yield("", err)
				return
			}
		}
	}
}

// FlushByTag removes every entry carrying tag and returns how many unexpired
// ones went. It reads only the entries the tag index points at.
func (s *Store) FlushByTag(ctx context.Context, tag string) (int, error) {
	if err := cache.ValidateKey(tag); err != nil {
		return 0, fmt.Errorf("tag: %w", err)
	}
	if err := s.check(ctx, "flush by tag"); err != nil {
		return 0, err
	}
	n := 0
	dirs := map[string]bool{}
	for name, err := range s.markers(tag) {
		if err != nil {
			return n, fsErr("flush by tag", err)
		}
		if err := s.check(ctx, "flush by tag"); err != nil {
			return n, err
		}
		err := s.withShard(ctx, name, func() error {
			r, err := s.readHeader(name)
			if err != nil {
				return err
			}
			if r == nil || !r.hasTag(tag) {
				s.removeMarker(tag, name) // stale
				return nil
			}
			removed, err := s.removeEntry(name, r)
			if err != nil {
				return err
			}
			if removed {
				dirs[s.shardDir(name)] = true
				if !r.expired(time.Now().UnixNano()) {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return n, fsErr("flush by tag", err)
		}
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return n, fsErr("flush by tag", err)
		}
	}
	return n, nil
}

// Tagged streams the keys of the unexpired entries carrying tag, reading the
// header of each entry the tag index points at; stale markers are removed.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := cache.ValidateKey(tag); err != nil {
			yield("", fmt.Errorf("tag: %w", err))
			return
		}
		if err := s.check(ctx, "tagged"); err != nil {
			yield("", err)
			return
		}
		for name, err := range s.markers(tag) {
			if err == nil {
				err = s.check(ctx, "tagged")
			} else {
				err = fsErr("tagged", err)
			}
			if err != nil {
				yield("", err)
				return
			}
			r, err := s.readHeader(name)
			if err != nil {
				yield("", fsErr("tagged", err))
				return
			}
			if r != nil && r.hasTag(tag) {
				if !r.expired(time.Now().UnixNano()) && !yield(r.key, nil) {
					return
				}
				continue
			}
			// Stale marker: remove it unless a writer tagged the entry meanwhile.
			err = s.withShard(ctx, name, func() error {
				r, err := s.readHeader(name)
				if err == nil && (r == nil || !r.hasTag(tag)) {
					s.removeMarker(tag, name)
				}
				return err
			})
			if err != nil {
				yield("", fsErr("tagged", err))
				return
			}
		}
	}
}

// shardNames lists the shard folders of the namespace in order.
func (s *Store) shardNames() ([]string, error) {
	ents, err := os.ReadDir(s.entriesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); len(n) == 2 && e.IsDir() {
			out = append(out, n)
		}
	}
	return out, nil
}

// All streams the unexpired entries, one shard folder at a time (only that
// folder's file names are held in memory).
func (s *Store) All(ctx context.Context) iter.Seq2[cache.Entry, error] {
	return func(yield func(cache.Entry, error) bool) {
		if err := s.check(ctx, "all"); err != nil {
			yield(cache.Entry{}, err)
			return
		}
		shardList, err := s.shardNames()
		if err != nil {
			yield(cache.Entry{}, fsErr("all", err))
			return
		}
		for _, sh := range shardList {
			names, err := readNames(filepath.Join(s.entriesDir(), sh))
			if err != nil {
				yield(cache.Entry{}, fsErr("all", err))
				return
			}
			for _, name := range names {
				if !isFileName(name) {
					continue
				}
				if err := s.check(ctx, "all"); err != nil {
					yield(cache.Entry{}, err)
					return
				}
				r, err := s.readEntry(name)
				if err != nil {
					yield(cache.Entry{}, fsErr("all", err))
					return
				}
				if r == nil || r.expired(time.Now().UnixNano()) {
					continue
				}
				if !yield(r.export(), nil) {
					return
				}
			}
		}
	}
}

// readNames lists the names in dir (missing: none).
func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// CollectGarbage removes at most Options.GCBatch expired entries and returns how
// many went; it resumes where the previous call stopped. When it finishes a
// whole pass it also removes expired lock files, empty tag folders, leftovers
// of interrupted flushes, stray temporary files and old quarantined files.
func (s *Store) CollectGarbage(ctx context.Context) (int, error) {
	if err := s.check(ctx, "collect garbage"); err != nil {
		return 0, err
	}
	shardList, err := s.shardNames()
	if err != nil {
		return 0, fsErr("collect garbage", err)
	}
	n := 0
	start := int(s.gcShard.Load())
	for i := range shardList {
		idx := (start + i) % len(shardList)
		sh := shardList[idx]
		removed, err := s.collectShard(ctx, sh, s.sh.gcBatch-n)
		n += removed
		if err != nil {
			return n, err
		}
		if n >= s.sh.gcBatch {
			s.gcShard.Store(uint32(idx))
			if n > 0 {
				s.sh.log.Debug("filestore: collected garbage (batch full)", "namespace", s.ns, "removed", n)
			}
			return n, nil
		}
	}
	s.gcShard.Store(0)
	if err := s.collectRest(ctx); err != nil {
		return n, err
	}
	if n > 0 {
		s.sh.log.Debug("filestore: collected garbage", "namespace", s.ns, "removed", n)
	}
	return n, nil
}

// collectShard removes up to limit expired entries of one shard folder.
func (s *Store) collectShard(ctx context.Context, shard string, limit int) (int, error) {
	dir := filepath.Join(s.entriesDir(), shard)
	names, err := readNames(dir)
	if err != nil {
		return 0, fsErr("collect garbage", err)
	}
	n := 0
	for _, name := range names {
		if n >= limit {
			break
		}
		if err := s.check(ctx, "collect garbage"); err != nil {
			return n, err
		}
		if !isFileName(name) {
			s.removeStray(dir, name)
			continue
		}
		r, err := s.readHeader(name)
		if err != nil {
			return n, fsErr("collect garbage", err)
		}
		if r != nil && !r.expired(time.Now().UnixNano()) {
			continue
		}
		err = s.withShard(ctx, name, func() error {
			r, err := s.readHeader(name)
			if err != nil {
				return err
			}
			if r == nil {
				return s.quarantine(name)
			}
			if !r.expired(time.Now().UnixNano()) {
				return nil
			}
			removed, err := s.removeEntry(name, r)
			if removed {
				n++
			}
			return err
		})
		if err != nil {
			return n, fsErr("collect garbage", err)
		}
	}
	return n, nil
}

// quarantine moves a corrupt entry file aside (if it still exists).
func (s *Store) quarantine(name string) error {
	path := s.entryPath(name)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	dst := filepath.Join(filepath.Dir(path), badPrefix+name+"-"+strconv.FormatInt(time.Now().Unix(), 10))
	s.sh.log.Warn("filestore: moving corrupt entry file aside", "path", path, "to", dst)
	return os.Rename(path, dst)
}

// removeStray removes old temporary and quarantined files.
func (s *Store) removeStray(dir, name string) {
	var maxAge time.Duration
	switch {
	case strings.HasPrefix(name, tmpPrefix):
		maxAge = tmpMaxAge
	case strings.HasPrefix(name, badPrefix):
		maxAge = badMaxAge
	default:
		return
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Lstat(p); err == nil && time.Since(fi.ModTime()) > maxAge {
		_ = os.Remove(p)
	}
}

// collectRest is the end of a garbage collection pass: expired lock files,
// empty tag folders, interrupted flushes.
func (s *Store) collectRest(ctx context.Context) error {
	names, err := readNames(filepath.Join(s.dir, "mutex"))
	if err != nil {
		return fsErr("collect garbage", err)
	}
	now := time.Now().UnixNano()
	for _, name := range names {
		if err := s.check(ctx, "collect garbage"); err != nil {
			return err
		}
		if !isFileName(name) {
			s.removeStray(filepath.Join(s.dir, "mutex"), name)
			continue
		}
		if l, ok := s.readMutex(name); ok && l.expires > now {
			continue
		}
		err := s.withShard(ctx, name, func() error {
			if l, ok := s.readMutex(name); !ok || l.expires <= time.Now().UnixNano() {
				if err := os.Remove(s.mutexPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fsErr("collect garbage", err)
		}
	}
	tags, err := readNames(filepath.Join(s.dir, "tags"))
	if err != nil {
		return fsErr("collect garbage", err)
	}
	for _, t := range tags {
		_ = os.Remove(filepath.Join(s.dir, "tags", t)) // fails unless empty
	}
	top, err := readNames(s.dir)
	if err != nil {
		return fsErr("collect garbage", err)
	}
	for _, n := range top {
		if strings.HasPrefix(n, flushPrefix) {
			if err := os.RemoveAll(filepath.Join(s.dir, n)); err != nil {
				return fsErr("collect garbage", err)
			}
		} else {
			s.removeStray(s.dir, n)
		}
	}
	return nil
}

// mutex is a lock owner record.
type mutex struct {
	token   string
	expires int64
}

const mutexMagic = "fxs-lock1"

func encodeMutex(name string, m mutex) []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n%s\n", mutexMagic, m.expires, m.token, name)
}

// readMutex reads the owner record of lock file name; ok is false when it is
// missing or unreadable (an unreadable one is logged and counts as free).
func (s *Store) readMutex(name string) (mutex, bool) {
	data, err := os.ReadFile(s.mutexPath(name))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.sh.log.Warn("filestore: unreadable lock file treated as free", "path", s.mutexPath(name), "error", err)
		}
		return mutex{}, false
	}
	parts := strings.Split(string(data), "\n")
	if len(parts) == 5 && parts[0] == mutexMagic && parts[2] != "" && parts[4] == "" {
		if exp, err := strconv.ParseInt(parts[1], 10, 64); err == nil && fileName(parts[3]) == name {
			return mutex{token: parts[2], expires: exp}, true
		}
	}
	s.sh.log.Warn("filestore: corrupt lock file treated as free", "path", s.mutexPath(name))
	return mutex{}, false
}

// Lock takes the lock called name for ttl and returns the owner token. The
// owner record is a file written under the shard's OS lock, so processes
// sharing the folder exclude each other.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := cache.ValidateKey(name); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("filestore: lock %q: ttl %v is not positive", name, ttl)
	}
	if err := s.check(ctx, "lock"); err != nil {
		return "", err
	}
	fname := fileName(name)
	var token string
	err := s.withShard(ctx, fname, func() error {
		now := time.Now()
		if m, ok := s.readMutex(fname); ok && m.expires > now.UnixNano() {
			return fmt.Errorf("filestore: lock %q: %w", name, cache.ErrLocked)
		}
		tok := crand.Text()
		data := encodeMutex(name, mutex{token: tok, expires: now.Add(ttl).UnixNano()})
		if err := s.writeFile(filepath.Join(s.dir, "mutex"), fname, data, syncNone); err != nil {
			return fsErr("lock", err)
		}
		token = tok
		return nil
	})
	return token, err
}

// Unlock releases the lock if token still owns it.
func (s *Store) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := cache.ValidateKey(name); err != nil {
		return false, fmt.Errorf("lock: %w", err)
	}
	if err := s.check(ctx, "unlock"); err != nil {
		return false, err
	}
	fname := fileName(name)
	var released bool
	err := s.withShard(ctx, fname, func() error {
		m, ok := s.readMutex(fname)
		if !ok || m.token != token {
			return nil
		}
		if err := os.Remove(s.mutexPath(fname)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fsErr("unlock", err)
		}
		released = m.expires > time.Now().UnixNano()
		return nil
	})
	return released, err
}

// Sub returns the child namespace name, a sibling folder sharing this store's
// settings. Closing it does nothing; closing the root closes it.
func (s *Store) Sub(name string) (cache.Backend, error) {
	full, err := cache.JoinNamespace(s.ns, name)
	if err != nil {
		return nil, err
	}
	if s.sh.closed.Load() {
		return nil, fmt.Errorf("filestore: sub %q: %w", name, cache.ErrClosed)
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
