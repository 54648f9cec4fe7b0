package filestore

import (
	"context"
	"errors"
	"fmt"
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
	// corruptPrefix starts the name a corrupt record file is moved aside to.
	corruptPrefix = ".corrupt-"
	// trashPrefix starts the name a flushed namespace folder is moved to.
	trashPrefix = ".flush-"
)

// CollectGarbage removes expired records, at most o.Max of them, and reports
// each to o.Removed. Each record is removed under its locks after a second look,
// so of several processes collecting at once exactly one removes and reports it.
// The walk resumes in the shard folder where the previous call of this Store
// stopped. A call that finishes its walk also removes what interrupted
// operations left: temporary files of dead writers, placeholders, index entries
// of missing records, empty tag folders, expired lock files and flushed folders.
// Corrupt record files are moved aside (".corrupt-" and their name) and logged.
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
	before := o.Before
	if before.IsZero() {
		before = time.Now()
	}
	var shards []string
	for sh, err := range s.shards(ctx, op) {
		if err != nil {
			return 0, err
		}
		shards = append(shards, sh)
	}
	slices.Sort(shards)
	start := int(s.gcShard.Load())
	n := 0
	for i := range shards {
		idx := (start + i) % len(shards)
		removed, err := s.collectShard(ctx, shards[idx], before, limit-n, o)
		n += removed
		if err != nil {
			return n, err
		}
		if n >= limit {
			s.gcShard.Store(int64(idx))
			s.sh.log.Debug("filestore: collected garbage (batch full)", "namespace", s.ns, "removed", n)
			return n, nil
		}
	}
	s.gcShard.Store(0)
	if err := s.sweep(ctx); err != nil {
		return n, err
	}
	if n > 0 {
		s.sh.log.Debug("filestore: collected garbage", "namespace", s.ns, "removed", n)
	}
	return n, nil
}

// collectShard removes up to limit expired records of one shard folder, fsyncs
// the folder and then reports them.
func (s *Store) collectShard(ctx context.Context, shard string, before time.Time, limit int, o cache.GCOptions) (int, error) {
	dir := filepath.Join(s.recordsDir(), shard)
	var removed []cache.Record
	err := func() error {
		for name, err := range s.names(ctx, "collect garbage", dir) {
			if err != nil {
				return err
			}
			if target, ok := tempTarget(name); ok {
				if err := s.removeTemp(ctx, dir, name, target); err != nil {
					return fail("collect garbage", name, err)
				}
				continue
			}
			if !isName(name) {
				continue
			}
			if len(removed) >= limit {
				return nil
			}
			r, err := s.header(filepath.Join(dir, name), name)
			if err == nil && r != nil && !r.expired(before) {
				continue
			}
			if err != nil && !errors.Is(err, errCorrupt) {
				return fail("collect garbage", name, err)
			}
			// Expired, a placeholder or corrupt: look again under the locks.
			rec, err := s.collectOne(ctx, dir, name, before, o.Fields)
			if err != nil {
				return fail("collect garbage", name, err)
			}
			if rec != nil {
				removed = append(removed, *rec)
			}
		}
		return nil
	}()
	if len(removed) > 0 {
		if serr := s.syncDir(dir); serr != nil && err == nil {
			err = fail("collect garbage", dir, serr)
		}
		if o.Removed != nil {
			for _, r := range removed {
				o.Removed(r)
			}
		}
	}
	return len(removed), err
}

// collectOne removes record file name if it is still expired at before, and
// returns what it removed; it also removes a placeholder left by a dead writer
// and moves a corrupt file aside.
func (s *Store) collectOne(ctx context.Context, dir, name string, before time.Time, fields []string) (*cache.Record, error) {
	h, err := s.hold(ctx, dir, name, false)
	if err != nil || h == nil {
		return nil, err
	}
	defer h.release() // removes a placeholder
	if len(h.data) == 0 {
		return nil, nil
	}
	r := s.current(h)
	if r == nil {
		return nil, s.quarantine(h)
	}
	if !r.expired(before) {
		return nil, nil
	}
	// The index entries go first, while the record is still in place and
	// locked: no writer can add a tag meanwhile. An expired record the index
	// misses after a crash here is absent anyway.
	for _, t := range r.tags {
		s.removeMarker(s.tagDir(t), name)
	}
	if err := h.remove(); err != nil {
		return nil, err
	}
	out := r.export(fields)
	if len(fields) == 0 {
		out.Fields = nil
	}
	return &out, nil
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

// removeTemp removes the temporary file tmp of dir, meant to replace target, if
// its writer is gone: a writer holds target's locks for as long as its
// temporary file exists, so once they are ours, the file is a leftover.
func (s *Store) removeTemp(ctx context.Context, dir, tmp, target string) error {
	h, err := s.hold(ctx, dir, target, false)
	if err != nil {
		return err
	}
	if h != nil {
		defer h.release()
	}
	if err := os.Remove(filepath.Join(dir, tmp)); err != nil && !missing(err) {
		return err
	}
	return nil
}

// sweep ends a complete pass of garbage collection: index entries of missing
// records, empty tag folders, expired lock files, leftovers of interrupted lock
// writes and of interrupted Flushes of this namespace.
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
			if _, err := os.Lstat(s.recordPath(name)); missing(err) {
				if err := s.cleanMarker(ctx, dir, "", name); err != nil {
					return fail(op, name, err)
				}
			}
		}
		_ = os.Remove(dir) // fails unless empty
	}
	for name, err := range s.names(ctx, op, s.locksDir()) {
		if err != nil {
			return err
		}
		if target, ok := tempTarget(name); ok {
			if err := s.removeTemp(ctx, s.locksDir(), name, target); err != nil {
				return fail(op, name, err)
			}
			continue
		}
		if !isName(name) {
			continue
		}
		if r, err := s.header(filepath.Join(s.locksDir(), name), name); err == nil && r != nil && !r.expired(time.Now()) {
			continue
		}
		if err := s.expireLock(ctx, name); err != nil {
			return fail(op, name, err)
		}
	}
	folder := filepath.Base(s.dir)
	for name, err := range s.names(ctx, op, s.sh.dir) {
		if err != nil {
			return err
		}
		rest, ok := strings.CutPrefix(name, trashPrefix)
		id, ok2 := strings.CutSuffix(rest, "."+folder)
		if ok && ok2 && !strings.Contains(id, ".") {
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
	trash := filepath.Join(s.sh.dir, trashPrefix+strconv.FormatUint(rand.Uint64(), 36)+"."+filepath.Base(s.dir))
	if err := os.Rename(s.dir, trash); err != nil {
		if missing(err) {
			return nil
		}
		return fail("flush", s.ns, err)
	}
	if err := s.syncDir(s.sh.dir); err != nil {
		return fail("flush", s.ns, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		s.sh.log.Warn("filestore: flush could not delete the old folder; garbage collection will", "path", trash, "error", err)
	}
	return nil
}
