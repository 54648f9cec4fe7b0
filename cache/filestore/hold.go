package filestore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/fxsession/fxsession/internal/backoff"
)

// A change of a record file follows one protocol (hold, then replace or
// remove, then release), shared by records, lock files and the upkeep of the
// tag index:
//
//  1. take the file's in-process lock (goroutines wait for it honouring their
//     context), then open the file and take its OS lock (flock, which excludes
//     other processes; polled, so that waiting honours the context too);
//  2. check that the file locked is still the one at its name (a writer that got
//     there first may have renamed a new file over it, or removed it): if not,
//     start again;
//  3. read it through the locked descriptor, decide, and either write the new
//     file under a temporary name, lock it, fsync it, rename it over the name and
//     fsync the folder, or remove the name;
//  4. release both locks.
//
// A missing record is locked too when it is about to be created (or when the tag
// index must be sure it stays missing): an empty placeholder file is created
// exclusively and locked. Readers treat an empty file as absent; releasing a
// placeholder that was not replaced removes it.
//
// Everything after step 1 goes through the folder's descriptor (an [os.Root]),
// so an operation under way when Flush moves the namespace folder aside finishes
// in the moved folder and never touches the new one.

// held is a record file under its locks.
type held struct {
	root *os.Root // the file's folder, followed if Flush moves it
	name string
	f    *os.File // the locked file
	data []byte   // its bytes; empty for a placeholder
	next *os.File // the new file, locked, once renamed over name
	gone bool     // name was replaced or removed
	free func()   // releases the in-process lock
}

// hold locks the file name in dir. When the file is missing it returns nil,
// unless create is set: then it locks a placeholder it creates (and the folder
// if needed).
func (s *Store) hold(ctx context.Context, dir, name string, create bool) (*held, error) {
	free, err := s.sh.inproc.lock(ctx, filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	for {
		if err := ctx.Err(); err != nil {
			free()
			return nil, err
		}
		h, retry, err := s.tryHold(ctx, dir, name, create)
		if h != nil {
			h.free = free
			return h, nil
		}
		if err != nil || !retry {
			free()
			return nil, err
		}
	}
}

// tryHold is one attempt of hold; retry says the file changed under it.
func (s *Store) tryHold(ctx context.Context, dir, name string, create bool) (h *held, retry bool, err error) {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, false, nil
		}
		return nil, true, s.ensureDir(dir)
	}
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if h == nil {
			root.Close()
		}
	}()
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) && create {
		f, err = root.OpenFile(name, os.O_RDONLY|os.O_CREATE|os.O_EXCL, filePerm)
		if errors.Is(err, fs.ErrExist) {
			return nil, true, nil
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, inRoot(root, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	if err := flock(ctx, f); err != nil {
		return nil, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	cur, err := root.Stat(name)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !os.SameFile(fi, cur) {
		return nil, true, nil // replaced or removed while we waited
	}
	if err != nil {
		return nil, false, inRoot(root, err)
	}
	data, err := readAll(f, fi.Size())
	if err != nil {
		return nil, false, err
	}
	ok = true
	return &held{root: root, name: name, f: f, data: data}, false, nil
}

// readAll reads the size bytes of f (from its start).
func readAll(f *os.File, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return data, nil
}

// replace writes data as the new file: a locked temporary file, fsynced when
// durable, renamed over the name, and the folder fsynced. The new file stays
// locked until release, so nobody changes it before this change is complete. On
// failure the old file is untouched and the temporary file removed.
func (h *held) replace(data []byte, durable bool, sync func(*os.File) error) (err error) {
	tmp := tempName(h.name)
	f, err := h.root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return inRoot(h.root, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = h.root.Remove(tmp)
			err = inRoot(h.root, err)
		}
	}()
	if ok, err := tryFlock(f); err != nil || !ok {
		return cmp.Or(err, fmt.Errorf("lock %s: held by another", f.Name()))
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if durable {
		if err := sync(f); err != nil {
			return err
		}
	}
	if err := h.root.Rename(tmp, h.name); err != nil {
		return err
	}
	h.next, h.gone = f, true
	if durable {
		return syncRoot(h.root, sync)
	}
	return nil
}

// inRoot makes the path of an error met through root name the folder too.
func inRoot(root *os.Root, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && !filepath.IsAbs(pe.Path) {
		return &fs.PathError{Op: pe.Op, Path: filepath.Join(root.Name(), pe.Path), Err: pe.Err}
	}
	return err
}

// remove removes the file (the caller fsyncs the folder when it matters).
func (h *held) remove() error {
	if err := h.root.Remove(h.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return inRoot(h.root, err)
	}
	h.gone = true
	return nil
}

// release removes a placeholder that was not replaced and drops the locks.
func (h *held) release() {
	if !h.gone && len(h.data) == 0 {
		_ = h.root.Remove(h.name)
	}
	if h.next != nil {
		h.next.Close()
	}
	h.f.Close()
	h.root.Close()
	h.free()
}

// tempPrefix starts the names of temporary files: ".tmp-", the name of the file
// they will replace, "-", a random suffix.
const tempPrefix = ".tmp-"

func tempName(name string) string {
	return tempPrefix + name + "-" + strconv.FormatUint(rand.Uint64(), 36)
}

// tempTarget returns the name of the file a temporary file was meant to
// replace.
func tempTarget(tmp string) (string, bool) {
	if len(tmp) < len(tempPrefix)+nameLen+2 || tmp[len(tempPrefix)+nameLen] != '-' {
		return "", false
	}
	name := tmp[len(tempPrefix) : len(tempPrefix)+nameLen]
	return name, isName(name)
}

// syncRoot fsyncs the folder of root.
func syncRoot(root *os.Root, sync func(*os.File) error) error {
	d, err := root.Open(".")
	if err != nil {
		return inRoot(root, err)
	}
	err = sync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir fsyncs the folder dir.
func (s *Store) syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = s.sh.syncFile(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ensureDir creates dir and the missing folders above it (up to the store's
// folder), fsyncing the parent of each folder created so that it survives a
// crash.
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
		if err := s.syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// flock takes f's OS lock, polling while another process (or another open file
// of this one) holds it.
func flock(ctx context.Context, f *os.File) error {
	b := backoff.Backoff{Min: 20 * time.Microsecond, Max: 5 * time.Millisecond}
	for {
		ok, err := tryFlock(f)
		if ok || err != nil {
			return err
		}
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// keyLocks serialise the goroutines of one process per file before they take
// the file's OS lock: waiting here honours the context and costs no system
// call.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch    chan struct{}
	users int
}

// lock takes the lock of key and returns its release.
func (k *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; k.leave(key, l) }, nil
	case <-ctx.Done():
		k.leave(key, l)
		return nil, ctx.Err()
	}
}

func (k *keyLocks) leave(key string, l *keyLock) {
	k.mu.Lock()
	if l.users--; l.users == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
}
