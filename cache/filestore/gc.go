package filestore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fxsession/fxsession/cache"
)

const (
	corruptPrefix = ".corrupt-" // a corrupt file moved aside
	trashPrefix   = ".flush-"   // a flushed namespace folder: prefix, folder, ".", random id
)

// CollectGarbage removes expired records, at most o.Max of them, and reports
// each to o.Removed. Each record is removed under its locks after a second look,
// so of several processes collecting at once exactly one removes and reports it.
// The walk resumes in the shard folder where this Store's previous call
// stopped. A call that completes the walk also sweeps: index entries of missing
// records, empty tag folders, expired lock files and flushed folders. On the
// way it removes what dead writers left (temporary files, placeholders) and
// moves corrupt files aside (".corrupt-" and their name), logged.
func (s *Store) CollectGarbage(ctx context.Context, o cache.GCOptions) (int, error) {
	for _, f := range o.Fields {
		if err := cache.ValidateKey(f); err != nil {
			return 0, fmt.Errorf("filestore: collect garbage: field: %w", err)
		}
	}
	const op = "collect garbage"
	if err := s.check(ctx, op); err != nil {
		return 0, err
	}
	limit := o.Max
	if limit <= 0 {
		limit = cache.DefaultGCBatchSize
	}
	if o.Before.IsZero() {
		o.Before = time.Now()
	}
	var shards []string
	for sh, err := range s.names(ctx, op, s.recordsDir()) {
		if err != nil {
			return 0, err
		}
		if len(sh) == 2 && isHex(sh) {
			shards = append(shards, sh)
		}
	}
	slices.Sort(shards)
	n, start := 0, int(s.gcShard.Load())
	for i := range shards {
		idx := (start + i) % len(shards)
		dir := filepath.Join(s.recordsDir(), shards[idx])
		removed, err := s.collectDir(ctx, dir, o.Before, limit-n, o.Fields)
		if len(removed) > 0 {
			if serr := s.syncDir(dir); err == nil && serr != nil {
				err = fail(op, dir, serr)
			}
			for _, r := range removed {
				if o.Removed != nil {
					o.Removed(r)
				}
			}
		}
		if n += len(removed); err != nil || n >= limit {
			s.gcShard.Store(int64(idx))
			s.sh.log.Debug("filestore: collected garbage (batch full)", "namespace", s.ns, "removed", n)
			return n, err
		}
	}
	s.gcShard.Store(0)
	if n > 0 {
		s.sh.log.Debug("filestore: collected garbage", "namespace", s.ns, "removed", n)
	}
	return n, s.sweep(ctx)
}

// collectDir removes up to limit files of dir that expired at before, and
// returns them (with the fields named); it also removes what dead writers left
// and moves corrupt files aside.
func (s *Store) collectDir(ctx context.Context, dir string, before time.Time, limit int, fields []string) ([]cache.Record, error) {
	var removed []cache.Record
	for name, err := range s.names(ctx, "collect garbage", dir) {
		if err != nil || len(removed) >= limit {
			return removed, err
		}
		var r *record
		if target, ok := tempTarget(name); ok {
			// A writer holds its file's locks for as long as its temporary file
			// exists: once they are ours, the file is a leftover.
			err = s.withHeld(ctx, dir, target, func(*held) error { return os.Remove(filepath.Join(dir, name)) })
		} else if !isName(name) {
			continue
		} else if r, err = s.load(dir, name); err == nil && (r == nil || r.expired(before)) {
			// Expired, a placeholder or corrupt: look again under the locks.
			err = s.withHeld(ctx, dir, name, func(h *held) error {
				if h == nil || len(h.data) == 0 { // gone, or a placeholder (release removes it)
					return nil
				}
				r := s.current(h)
				switch {
				case r == nil:
					return s.quarantine(h)
				case !r.expired(before):
					return nil
				}
				// The index entries go while the record is still in place and
				// locked, so no writer adds a tag meanwhile; should a crash
				// intervene, the index misses an expired record, which is absent.
				for _, t := range r.tags {
					s.removeMarker(s.tagDir(t), name)
				}
				if err := h.remove(); err != nil {
					return err
				}
				out := r.export(fields)
				if len(fields) == 0 {
					out.Fields = nil
				}
				removed = append(removed, out)
				return nil
			})
		}
		if errors.Is(err, errCorrupt) { // not a regular file: left alone
			s.sh.log.Warn("filestore: garbage collection skips", "error", err)
		} else if err != nil {
			return removed, fail("collect garbage", name, err)
		}
	}
	return removed, nil
}

// withHeld runs fn on the file name of dir under its locks (fn(nil) when it is
// missing).
func (s *Store) withHeld(ctx context.Context, dir, name string, fn func(*held) error) error {
	h, err := s.hold(ctx, dir, name, false)
	if err != nil {
		return err
	}
	if h != nil {
		defer h.release()
		err = fn(h)
	} else {
		err = fn(nil)
	}
	return ignoreMissing(err)
}

// quarantine moves a held corrupt file aside, for inspection.
func (s *Store) quarantine(h *held) error {
	if err := h.root.Rename(h.name, corruptPrefix+h.name); err != nil {
		return inRoot(h.root, err)
	}
	h.gone = true
	s.sh.log.Warn("filestore: corrupt file moved aside", "path", h.f.Name(), "to", corruptPrefix+h.name)
	return nil
}

// sweep ends a complete pass of garbage collection: index entries of missing
// records, empty tag folders, lock files, flushed folders of this namespace.
func (s *Store) sweep(ctx context.Context) error {
	const op = "collect garbage"
	for folder, err := range s.names(ctx, op, s.tagsDir()) {
		if err != nil {
			return err
		}
		dir := filepath.Join(s.tagsDir(), folder)
		for name, err := range s.names(ctx, op, dir) {
			if err != nil {
				return err
			}
			if !isName(name) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(s.shardDir(name), name)); missing(err) {
				if err := s.cleanMarker(ctx, dir, "", name); err != nil {
					return fail(op, name, err)
				}
			}
		}
		_ = os.Remove(dir) // fails unless empty
	}
	if _, err := s.collectDir(ctx, s.locksDir(), time.Now(), math.MaxInt, nil); err != nil {
		return err
	}
	for name, err := range s.names(ctx, op, s.sh.dir) {
		if err != nil {
			return err
		}
		if id, ok := strings.CutPrefix(name, trashPrefix+filepath.Base(s.dir)+"."); ok && !strings.Contains(id, ".") {
			if err := os.RemoveAll(filepath.Join(s.sh.dir, name)); err != nil {
				return fail(op, name, err)
			}
		}
	}
	return nil
}

// Flush removes every record, tag and lock of the namespace: its folder is
// renamed aside (so it empties at once), then deleted. Operations under way in
// the old folder finish there and are lost with it. A crash while deleting
// leaves the renamed folder, which CollectGarbage removes.
func (s *Store) Flush(ctx context.Context) error {
	if err := s.check(ctx, "flush"); err != nil {
		return err
	}
	trash := filepath.Join(s.sh.dir, trashPrefix+filepath.Base(s.dir)+"."+strconv.FormatUint(rand.Uint64(), 36))
	if err := os.Rename(s.dir, trash); err != nil {
		if err = ignoreMissing(err); err != nil {
			return fail("flush", s.ns, err)
		}
		return nil
	}
	if err := s.syncDir(s.sh.dir); err != nil {
		return fail("flush", s.ns, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		s.sh.log.Warn("filestore: flush could not delete the old folder; garbage collection will", "path", trash, "error", err)
	}
	return nil
}
