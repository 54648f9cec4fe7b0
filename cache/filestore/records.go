package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// load reads the record file name: nil when it is missing, a placeholder or
// corrupt (logged).
func (s *Store) load(name string) (*record, error) {
	path := s.recordPath(name)
	f, err := os.Open(path)
	if err != nil {
		if missing(err) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data, err := readAll(f, fi.Size())
	if err != nil {
		return nil, err
	}
	return s.decodeFile(path, name, data), nil
}

// decodeFile decodes the bytes of record file name: nil when they are a
// placeholder or corrupt (logged). A valid file of another key counts as
// corrupt.
func (s *Store) decodeFile(path, name string, data []byte) *record {
	if len(data) == 0 {
		return nil
	}
	r, err := decode(data)
	if err == nil && fileName(r.key) != name {
		err = fmt.Errorf("%w: holds key %q, which belongs elsewhere", errCorrupt, r.key)
	}
	if err != nil {
		s.corrupt(path, err)
		return nil
	}
	return &r
}

// current decodes a held record file.
func (s *Store) current(h *held) *record {
	return s.decodeFile(h.f.Name(), h.name, h.data)
}

// missing reports a file (or a folder above it) that does not exist.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// export returns the record as read: the fields named (all when none).
func (r *record) export(names []string) cache.Record {
	out := cache.Record{Key: r.key, Tags: r.tags, Version: r.version}
	if r.expires != 0 {
		out.Expires = time.Unix(0, r.expires)
	}
	if len(names) == 0 {
		out.Fields = r.fields
		return out
	}
	for _, f := range r.fields {
		if slices.Contains(names, f.Name) {
			out.Fields = append(out.Fields, f)
		}
	}
	return out
}

// Read reads the record under key: one file read, no lock.
func (s *Store) Read(ctx context.Context, key string, fields ...string) (cache.Record, error) {
	if err := cache.ValidateKeys(key, fields); err != nil {
		return cache.Record{}, fmt.Errorf("filestore: read: %w", err)
	}
	if err := s.check(ctx, "read"); err != nil {
		return cache.Record{}, err
	}
	r, err := s.load(fileName(key))
	if err != nil {
		return cache.Record{}, fail("read", key, err)
	}
	if r == nil || r.expired(time.Now()) {
		return cache.Record{}, fmt.Errorf("filestore: read %q: %w", key, cache.ErrNotFound)
	}
	return r.export(fields), nil
}

// ReadMany reads several records, one file read each.
func (s *Store) ReadMany(ctx context.Context, keys []string, fields ...string) ([]cache.Record, error) {
	for _, k := range keys {
		if err := cache.ValidateKeys(k, fields); err != nil {
			return nil, fmt.Errorf("filestore: read: %w", err)
		}
	}
	out := make([]cache.Record, len(keys))
	now := time.Now()
	for i, k := range keys {
		if i%64 == 0 {
			if err := s.check(ctx, "read"); err != nil {
				return nil, err
			}
		}
		r, err := s.load(fileName(k))
		if err != nil {
			return nil, fail("read", k, err)
		}
		if r == nil || r.expired(now) {
			out[i] = cache.Record{Key: k}
		} else {
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
	old := s.current(h)
	var cur record
	live := old != nil && !old.expired(now)
	switch {
	case w.Create && live:
		return 0, fmt.Errorf("filestore: create %q: it exists: %w", key, cache.ErrConflict)
	case !w.Create && !live:
		return 0, fmt.Errorf("filestore: write %q: %w", key, cache.ErrNotFound)
	case live:
		cur = *old
	default:
		cur = record{key: key}
	}
	for _, fw := range w.Fields {
		if !fw.Check {
			continue
		}
		var v cache.Version
		if i := cur.field(fw.Name); i >= 0 {
			v = cur.fields[i].Version
		}
		if v != fw.Expect {
			return 0, fmt.Errorf("filestore: write %q: field %q has version %d, not %d: %w", key, fw.Name, v, fw.Expect, cache.ErrConflict)
		}
	}
	var last cache.Version
	if old != nil {
		last = old.version
	}
	next := cur.apply(w, s.sh.version(last, now))
	data, err := encode(&next)
	if err != nil {
		return 0, fmt.Errorf("filestore: write %q: %w", key, err)
	}
	// The index gets the new tags before the record does, and loses the old
	// ones after: after a crash it may point at a record that lacks the tag
	// (Tagged skips and removes such entries), never miss one that has it.
	for _, t := range next.tags {
		if !cur.hasTag(t) {
			if err := s.addMarker(t, name); err != nil {
				return 0, fail("write tag index of", key, err)
			}
		}
	}
	if err := h.replace(data, true, s.sh.syncFile); err != nil {
		return 0, fail("write", key, err)
	}
	if old != nil {
		for _, t := range old.tags {
			if !next.hasTag(t) {
				s.removeMarker(s.tagDir(t), name)
			}
		}
	}
	return next.version, nil
}

// apply returns the record r with w applied as version v (r is not changed).
func (r *record) apply(w cache.Write, v cache.Version) record {
	next := record{key: r.key, version: v, expires: r.expires, tags: slices.Clone(r.tags)}
	next.fields = make([]cache.Field, 0, len(r.fields)+len(w.Fields))
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
	for _, t := range w.AddTags {
		if !next.hasTag(t) {
			next.tags = append(next.tags, t)
		}
	}
	next.tags = slices.DeleteFunc(next.tags, func(t string) bool { return slices.Contains(w.RemoveTags, t) })
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
	if err := cache.ValidateKey(key); err != nil {
		return false, fmt.Errorf("filestore: delete: %w", err)
	}
	if err := s.check(ctx, "delete"); err != nil {
		return false, err
	}
	return s.delete(ctx, key)
}

func (s *Store) delete(ctx context.Context, key string) (bool, error) {
	name := fileName(key)
	h, err := s.hold(ctx, s.shardDir(name), name, false)
	if err != nil || h == nil {
		if err != nil {
			err = fail("delete", key, err)
		}
		return false, err
	}
	defer h.release()
	r := s.current(h)
	if err := h.remove(); err != nil {
		return false, fail("delete", key, err)
	}
	if err := syncRoot(h.root, s.sh.syncFile); err != nil {
		return false, fail("delete", key, err)
	}
	return r != nil && !r.expired(time.Now()), nil
}

// DeleteMany removes several records, one Delete each.
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
		ok, err := s.delete(ctx, k)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}
