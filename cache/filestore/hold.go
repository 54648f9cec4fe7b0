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

// Every change of a record or lock file follows one protocol:
//
//  1. hold: take the file's in-process lock (goroutines queue there, honouring
//     their context), open the file and take its OS lock (flock, which excludes
//     other processes; polled, so that waiting honours the context too), and
//     check that the file locked is still the one at its name (a writer that got
//     there first may have renamed a new file over it, or removed it; if so,
//     start again); then read it through the locked descriptor;
//  2. replace (a temporary file, locked, written, fsynced, renamed over the name,
//     the folder fsynced: the new file stays locked until release) or remove;
//  3. release.
//
// A missing file is held by creating an empty placeholder exclusively and
// locking it: that is how a record is created, and how the tag index makes sure
// a record stays missing. Readers see an empty file as absent; a placeholder
// that was not replaced is removed on release.
//
// Everything after opening goes through the folder's descriptor (an [os.Root]),
// so an operation under way when Flush moves the namespace folder aside finishes
// in the moved folder and never touches the new one.

// held is a file under its locks.
type held struct {
	root *os.Root // the file's folder, followed if Flush moves it
	name string
	f    *os.File // the locked file
	data []byte   // its bytes; empty for a placeholder
	next *os.File // the new file, locked, once renamed over name
	gone bool     // name was replaced or removed
	free func()   // releases the in-process lock
}

// hold locks the file name in dir. When it is missing it returns nil, unless
// create is set: then it holds a placeholder (creating the folder if needed).
func (s *Store) hold(ctx context.Context, dir, name string, create bool) (*held, error) {
	free, err := s.sh.inproc.lock(ctx, filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	for ctx.Err() == nil {
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
	free()
	return nil, ctx.Err()
}

// tryHold is one attempt of hold; retry says the file changed under it.
func (s *Store) tryHold(ctx context.Context, dir, name string, create bool) (h *held, retry bool, err error) {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) && create {
		return nil, true, s.ensureDir(dir)
	}
	if err != nil {
		return nil, false, ignoreMissing(err)
	}
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) && create {
		if f, err = root.OpenFile(name, os.O_RDONLY|os.O_CREATE|os.O_EXCL, filePerm); errors.Is(err, fs.ErrExist) {
			retry, err = true, nil // created meanwhile
			if fi, lerr := root.Lstat(name); lerr == nil && !fi.Mode().IsRegular() {
				retry, err = false, &fs.PathError{Op: "open", Path: name, Err: errors.New("not a regular file")}
			}
		}
	}
	if err == nil && !retry {
		h = &held{root: root, name: name, f: f}
		if retry, err = h.lock(ctx); err != nil || retry {
			f.Close()
			h = nil
		}
	}
	if h == nil {
		root.Close()
		return nil, retry, ignoreMissing(inRoot(root, err))
	}
	return h, false, nil
}

// lock takes the OS lock of h.f, checks that it is still the file at h.name
// (retry when not) and reads it.
func (h *held) lock(ctx context.Context) (retry bool, err error) {
	b := backoff.Backoff{Min: 20 * time.Microsecond, Max: 5 * time.Millisecond}
	for {
		ok, err := tryFlock(h.f)
		if err != nil {
			return false, err
		}
		if ok {
			break
		}
		if !b.Wait(ctx) {
			return false, ctx.Err()
		}
	}
	fi, err := h.f.Stat()
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("%w: %s is not a regular file", errCorrupt, h.f.Name())
	}
	cur, err := h.root.Stat(h.name)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !os.SameFile(fi, cur) {
		return true, nil // replaced or removed while we waited
	}
	if err != nil {
		return false, err
	}
	h.data, err = readAll(h.f, fi.Size())
	return false, err
}

// readAll reads the size bytes of f from its start.
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

// replace writes data as the new file (fsynced, with its folder, when
// durable). On failure the old file is untouched and the temporary file gone.
func (h *held) replace(data []byte, durable bool, sync func(*os.File) error) (err error) {
	tmp := tempPrefix + h.name + "-" + strconv.FormatUint(rand.Uint64(), 36)
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

// remove removes the file; the caller fsyncs the folder when it matters.
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

// tempPrefix starts the name of a temporary file: ".tmp-", the name of the file
// it is to replace, "-", a random suffix.
const tempPrefix = ".tmp-"

// tempTarget returns the name of the file the temporary file tmp was to
// replace.
func tempTarget(tmp string) (string, bool) {
	if len(tmp) < len(tempPrefix)+nameLen+2 || tmp[:len(tempPrefix)] != tempPrefix || tmp[len(tempPrefix)+nameLen] != '-' {
		return "", false
	}
	name := tmp[len(tempPrefix) : len(tempPrefix)+nameLen]
	return name, isName(name)
}

// inRoot makes an error met through root name the whole path.
func inRoot(root *os.Root, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && !filepath.IsAbs(pe.Path) {
		return &fs.PathError{Op: pe.Op, Path: filepath.Join(root.Name(), pe.Path), Err: pe.Err}
	}
	return err
}

// ignoreMissing turns the error of a missing file or folder into nil.
func ignoreMissing(err error) error {
	if missing(err) {
		return nil
	}
	return err
}

// syncRoot fsyncs the folder of root.
func syncRoot(root *os.Root, sync func(*os.File) error) error {
	d, err := root.Open(".")
	if err != nil {
		return inRoot(root, err)
	}
	defer d.Close()
	return sync(d)
}

// syncDir fsyncs the folder dir.
func (s *Store) syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return s.sh.syncFile(d)
}

// ensureDir creates dir and the missing folders above it, fsyncing the parent
// of each one created so that it survives a crash.
func (s *Store) ensureDir(dir string) error {
	var created []string
	for d := dir; filepath.Dir(d) != d; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			break
		}
		created = append(created, d)
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

// keyLocks is the in-process lock of each file being held.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch    chan struct{}
	users int
}

// lock takes the lock of key, waiting while ctx lasts, and returns its release.
func (k *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	leave := func() {
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}
