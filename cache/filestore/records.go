package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// load reads the file name in dir: nil when it is missing, a placeholder or
// corrupt (logged). This is the whole of a read: one open, one read.
func (s *Store) load(dir, name string) (*record, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, ignoreMissing(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		s.sh.log.Warn("filestore: not a regular file, treated as absent", "path", f.Name())
		return nil, nil
	}
	data, err := readAll(f, fi.Size())
	if err != nil {
		return nil, err
	}
	return s.decodeFile(f.Name(), name, data), nil
}

// decodeFile decodes the bytes of file name: nil when they are a placeholder or
// corrupt (logged). A valid file of another key counts as corrupt.
func (s *Store) decodeFile(path, name string, data []byte) *record {
	if len(data) == 0 {
		return nil
	}
	r, err := decode(data)
	if err == nil && fileName(r.key) != name {
		err = fmt.Errorf("%w: holds key %q, which belongs elsewhere", errCorrupt, r.key)
	}
	if err != nil {
		s.sh.log.Warn("filestore: corrupt file treated as absent", "path", path, "error", err)
		return nil
	}
	return &r
}

// current decodes a held file.
func (s *Store) current(h *held) *record { return s.decodeFile(h.f.Name(), h.name, h.data) }

// missing reports a file (or a folder above it) that does not exist.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// export returns the record as read: the fields named (all when none).
func (r *record) export(names []string) cache.Record {
	out := cache.Record{Key: r.key, Tags: r.tags, Version: r.version, Fields: r.fields}
	if r.expires != 0 {
		out.Expires = time.Unix(0, r.expires)
	}
	if len(names) > 0 {
		out.Fields = slices.DeleteFunc(r.fields, func(f cache.Field) bool { return !slices.Contains(names, f.Name) })
	}
	return out
}

// Read reads the record under key: one file read, no lock.
func (s *Store) Read(ctx context.Context, key string, fields ...string) (cache.Record, error) {
	rs, err := s.ReadMany(ctx, []string{key}, fields...)
	if err != nil {
		return cache.Record{}, err
	}
	if !rs[0].Exists() {
		return cache.Record{}, fmt.Errorf("filestore: read %q: %w", key, cache.ErrNotFound)
	}
	return rs[0], nil
}

// ReadMany reads several records, one file read each.
func (s *Store) ReadMany(ctx context.Context, keys []string, fields ...string) ([]cache.Record, error) {
	for _, k := range keys {
		if err := cache.ValidateKeys(k, fields); err != nil {
			return nil, fmt.Errorf("filestore: read: %w", err)
		}
	}
	out := make([]cache.Record, len(keys))
	for i, k := range keys {
		if err := s.check(ctx, "read"); err != nil {
			return nil, err
		}
		name := fileName(k)
		r, err := s.load(s.shardDir(name), name)
		if err != nil {
			return nil, fail("read", k, err)
		}
		out[i] = cache.Record{Key: k}
		if r != nil && !r.expired(time.Now()) {
			out[i] = r.export(fields)
		}
	}
	return out, nil
}

// Write applies w to the record under key, holding the record file's locks
// for the read, the checks and the write of the new file.
func (s *Store) Write(ctx context.Context, key string, w cache.Write) (cache.Version, error) {
	if err := cache.ValidateWrite(key, w, s.sh.maxValue); err != nil {
		return 0, fmt.Errorf("filestore: write: %w", err)
	}
	if err := s.check(ctx, "write"); err != nil {
		return 0, err
	}
	name := fileName(key)
	h, err := s.hold(ctx, s.shardDir(name), name, w.Create)
	if err != nil {
		return 0, fail("write", key, err)
	}
	if h == nil {
		return 0, fmt.Errorf("filestore: write %q: %w", key, cache.ErrNotFound)
	}
	defer h.release()
	now := time.Now()
	old, cur := s.current(h), &record{key: key}
	live := old != nil && !old.expired(now)
	switch {
	case w.Create && live:
		return 0, fmt.Errorf("filestore: create %q: it exists: %w", key, cache.ErrConflict)
	case !w.Create && !live:
		return 0, fmt.Errorf("filestore: write %q: %w", key, cache.ErrNotFound)
	case live:
		cur = old
	}
	for _, fw := range w.Fields {
		var v cache.Version
		if i := cur.field(fw.Name); i >= 0 {
			v = cur.fields[i].Version
		}
		if fw.Check && v != fw.Expect {
			return 0, fmt.Errorf("filestore: write %q: field %q has version %d, not %d: %w", key, fw.Name, v, fw.Expect, cache.ErrConflict)
		}
	}
	if old == nil {
		old = &record{}
	}
	next := cur.apply(w, s.sh.version(old.version, now))
	data, err := encode(&next)
	if err != nil {
		return 0, fmt.Errorf("filestore: write %q: %w", key, err)
	}
	// The index gets the new tags before the record does, and loses the old
	// ones after: after a crash it may name a record that lacks the tag
	// (Tagged skips and removes such entries), never miss one that has it.
	for _, t := range next.tags {
		if !cur.hasTag(t) {
			if err := s.addMarker(t, name); err != nil {
				return 0, fail("write the tag index of", key, err)
			}
		}
	}
	if err := h.replace(data, true, s.sh.syncFile); err != nil {
		return 0, fail("write", key, err)
	}
	for _, t := range old.tags {
		if !next.hasTag(t) {
			s.removeMarker(s.tagDir(t), name)
		}
	}
	return next.version, nil
}

// apply returns the record r with w applied as version v (r is not changed).
func (r *record) apply(w cache.Write, v cache.Version) record {
	next := record{key: r.key, version: v, expires: r.expires, fields: make([]cache.Field, 0, len(r.fields)+len(w.Fields))}
	for _, f := range r.fields {
		if !slices.ContainsFunc(w.Fields, func(fw cache.FieldWrite) bool { return fw.Name == f.Name }) {
			next.fields = append(next.fields, f)
		}
	}
	for _, fw := range w.Fields {
		if !fw.Remove {
			next.fields = append(next.fields, cache.Field{Name: fw.Name, Value: fw.Value, Version: v})
		}
	}
	for _, t := range append(slices.Clip(r.tags), w.AddTags...) {
		if !next.hasTag(t) && !slices.Contains(w.RemoveTags, t) {
			next.tags = append(next.tags, t)
		}
	}
	switch {
	case w.Expires.Equal(cache.NoExpiry):
		next.expires = 0
	case !w.Expires.IsZero():
		next.expires = unixNano(w.Expires)
	}
	return next
}

// Delete removes the record file under key: one unlink under the record's
// locks. The tag index is cleaned lazily (by Tagged and CollectGarbage).
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	n, err := s.DeleteMany(ctx, []string{key})
	return n > 0, err
}

// DeleteMany removes several records, one at a time, and returns how many live
// ones went.
func (s *Store) DeleteMany(ctx context.Context, keys []string) (int, error) {
	for _, k := range keys {
		if err := cache.ValidateKey(k); err != nil {
			return 0, fmt.Errorf("filestore: delete: %w", err)
		}
	}
	n := 0
	for _, k := range keys {
		if err := s.check(ctx, "delete"); err != nil {
			return n, err
		}
		name := fileName(k)
		h, err := s.hold(ctx, s.shardDir(name), name, false)
		if err == nil && h != nil {
			r := s.current(h)
			if err = h.remove(); err == nil {
				err = syncRoot(h.root, s.sh.syncFile)
			}
			h.release()
			if err == nil && r != nil && !r.expired(time.Now()) {
				n++
			}
		}
		if err != nil {
			return n, fail("delete", k, err)
		}
	}
	return n, nil
}
