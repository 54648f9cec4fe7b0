package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// names streams the names in dir, Options.BatchSize of them at a time (a
// missing folder has none), checking the store and ctx before each batch.
func (s *Store) names(ctx context.Context, op, dir string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		d, err := os.Open(dir)
		if missing(err) {
			return
		}
		if err != nil {
			yield("", cache.Unavailable("filestore: "+op, err))
			return
		}
		defer d.Close()
		for {
			if err := s.check(ctx, op); err != nil {
				yield("", err)
				return
			}
			names, err := d.Readdirnames(s.sh.batch)
			for _, n := range names {
				if !yield(n, nil) {
					return
				}
			}
			if errors.Is(err, io.EOF) || missing(err) { // missing: removed meanwhile (an empty tag folder)
				return
			}
			if err != nil {
				yield("", cache.Unavailable("filestore: "+op, err))
				return
			}
		}
	}
}

// Keys streams the keys of the live records, one shard folder at a time and
// Options.BatchSize names at a time, reading each record file.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := s.check(ctx, "keys"); err != nil {
			yield("", err)
			return
		}
		for shard, err := range s.names(ctx, "keys", s.recordsDir()) {
			if err != nil {
				yield("", err)
				return
			}
			if len(shard) != 2 || !isHex(shard) {
				continue
			}
			dir := filepath.Join(s.recordsDir(), shard)
			for name, err := range s.names(ctx, "keys", dir) {
				if err != nil {
					yield("", err)
					return
				}
				if !isName(name) {
					continue
				}
				r, err := s.load(dir, name)
				if err != nil {
					yield("", fail("keys", name, err))
					return
				}
				if r != nil && !r.expired(time.Now()) && !yield(r.key, nil) {
					return
				}
			}
		}
	}
}

// Tagged streams the keys of the live records carrying tag: the entries of the
// tag's index folder whose record has the tag. Entries whose record is gone or
// lacks the tag are removed on the way.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := cache.ValidateKey(tag); err != nil {
			yield("", fmt.Errorf("filestore: tagged: %w", err))
			return
		}
		if err := s.check(ctx, "tagged"); err != nil {
			yield("", err)
			return
		}
		dir := s.tagDir(tag)
		for name, err := range s.names(ctx, "tagged", dir) {
			if err != nil {
				yield("", err)
				return
			}
			if !isName(name) {
				continue
			}
			r, err := s.load(s.shardDir(name), name)
			switch {
			case err != nil:
				yield("", fail("tagged", tag, err))
				return
			case r != nil && r.hasTag(tag):
				if !r.expired(time.Now()) && !yield(r.key, nil) {
					return
				}
			default:
				if err := s.cleanMarker(ctx, dir, tag, name); err != nil {
					s.sh.log.Debug("filestore: stale tag index entry left", "tag", tag, "error", err)
				}
			}
		}
	}
}

// addMarker adds record file name to the index of tag (an empty file in the
// tag's folder), fsyncing the folder when the entry is new.
func (s *Store) addMarker(tag, name string) error {
	dir := s.tagDir(tag)
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
		switch {
		case err == nil:
			if err := f.Close(); err != nil {
				return err
			}
			return s.syncDir(dir)
		case errors.Is(err, fs.ErrExist):
			return nil
		case missing(err) && attempt < 3:
			if err := s.ensureDir(dir); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// removeMarker removes record file name from the index folder dir. A failure
// only leaves a stale entry, which readers skip.
func (s *Store) removeMarker(dir, name string) {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !missing(err) {
		s.sh.log.Warn("filestore: could not remove a tag index entry", "path", filepath.Join(dir, name), "error", err)
	}
}

// cleanMarker removes the entry name of the index folder dir unless the record
// carries tag (tag "", unknown: unless the record exists). It holds the
// record's locks (a placeholder's, when the record is missing), so no writer
// adds the tag meanwhile.
func (s *Store) cleanMarker(ctx context.Context, dir, tag, name string) error {
	h, err := s.hold(ctx, s.shardDir(name), name, true)
	if err != nil {
		return err
	}
	defer h.release()
	if r := s.current(h); r != nil && (tag == "" || r.hasTag(tag)) {
		return nil
	}
	s.removeMarker(dir, name)
	return nil
}
