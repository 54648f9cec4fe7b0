package session

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Manager owns the sessions of one namespace of a cache backend: it provides the
// HTTP middleware, the admin operations and garbage collection. Create it with
// [New] or through [Module].
type Manager struct {
	cfg  settings
	log  *slog.Logger
	meta cache.Backend // metadata entries, keyed by hashID
	data cache.Backend // values, keyed "<storageID>:<kind>:<name>", tagged storageID

	regMu  sync.Mutex
	bags   atomic.Pointer[map[string]struct{}]
	sealed atomic.Bool
}

// New returns a manager storing sessions in backend, in the namespace
// cfg.Namespace (default "session"). The zero Config is a working one.
func New(backend cache.Backend, cfg Config) (*Manager, error) {
	if backend == nil {
		return nil, errors.New("session: New: nil backend")
	}
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	root, err := backend.Sub(s.namespace)
	if err != nil {
		return nil, fmt.Errorf("session: namespace: %w", err)
	}
	meta, err := root.Sub("meta")
	if err != nil {
		return nil, fmt.Errorf("session: namespace: %w", err)
	}
	data, err := root.Sub("data")
	if err != nil {
		return nil, fmt.Errorf("session: namespace: %w", err)
	}
	m := &Manager{cfg: s, log: s.logger, meta: meta, data: data}
	m.bags.Store(&map[string]struct{}{})
	return m, nil
}

// RegisterBag registers a named attribute bag ([Session.Bag]). Bags must be
// registered before the manager starts serving (its first Middleware call, a
// detached session, or the fx start): later it is ErrRegistrationClosed.
// Registering a name twice is a no-op. Names use the cache key alphabet.
func (m *Manager) RegisterBag(name string) error {
	if err := checkKey(name); err != nil {
		return fmt.Errorf("session: bag name: %w", err)
	}
	m.regMu.Lock()
	defer m.regMu.Unlock()
	if m.sealed.Load() {
		return fmt.Errorf("%w: bag %q", ErrRegistrationClosed, name)
	}
	old := *m.bags.Load()
	if _, ok := old[name]; ok {
		return nil
	}
	next := maps.Clone(old)
	next[name] = struct{}{}
	m.bags.Store(&next)
	return nil
}

// seal closes bag registration.
func (m *Manager) seal() {
	if m.sealed.Load() {
		return
	}
	m.regMu.Lock()
	m.sealed.Store(true)
	m.regMu.Unlock()
}

// expired reports whether a session has outlived the inactivity timeout or the
// absolute lifetime at now.
func (m *Manager) expired(md *metadata, now time.Time) bool {
	if t := m.cfg.timeout; t > 0 && now.Sub(md.lastActivity) > t {
		return true
	}
	if a := m.cfg.absolute; a > 0 && now.Sub(md.created) > a {
		return true
	}
	return false
}

// expiry is when a session ends if unused (zero: never).
func (m *Manager) expiry(md *metadata) time.Time {
	var t time.Time
	if m.cfg.timeout > 0 {
		t = md.lastActivity.Add(m.cfg.timeout)
	}
	if m.cfg.absolute > 0 {
		if a := md.created.Add(m.cfg.absolute); t.IsZero() || a.Before(t) {
			t = a
		}
	}
	return t
}

func (m *Manager) metadataOf(hash string, md *metadata) Metadata {
	return Metadata{
		Hash:     hash,
		Created:  md.created,
		LastUsed: md.lastActivity,
		Lifetime: m.cfg.cookieLifetime,
		Expires:  m.expiry(md),
		Tags:     append([]string(nil), md.tags...),
	}
}

// destroyStored removes a session's values and then its metadata.
func (m *Manager) destroyStored(ctx context.Context, hash, storageID string) error {
	if storageID != "" {
		if _, err := m.data.FlushByTag(ctx, storageID); err != nil {
			return err
		}
	}
	_, err := m.meta.Delete(ctx, hash)
	return err
}

// Current returns the session of the request whose context is ctx (the same as
// [FromContext]).
func (m *Manager) Current(ctx context.Context) (*Session, bool) { return FromContext(ctx) }

// NewContext returns a context carrying a detached session, for code outside
// HTTP (jobs, tests): with id "" an unstarted one, otherwise the session with
// that ID, resumed on first use (a malformed or unknown ID gives an unstarted
// one). Changes are written by [Session.Commit]; nothing touches the last
// activity unless the session is started, changed or touched.
func (m *Manager) NewContext(parent context.Context, id string) (context.Context, *Session) {
	m.seal()
	st := &state{m: m}
	if ValidID(id) {
		st.cookieID = id
		st.phase = phaseLazy
	}
	s := &Session{st: st}
	return context.WithValue(parent, ctxKey{}, s), s
}

// Session opens an existing session for admin tools, by its ID or by its hash
// ([Metadata.Hash], as listed by [Manager.All]). Nothing is written unless the
// caller changes it and calls [Session.Commit]. An unknown, malformed or expired
// session matches ErrNotFound.
func (m *Manager) Session(ctx context.Context, idOrHash string) (*Session, error) {
	m.seal()
	hash, err := m.hashOf(idOrHash)
	if err != nil {
		return nil, err
	}
	e, err := m.meta.Get(ctx, hash)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", short(hash), err)
	}
	md, err := decodeMetadata(e.Value)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", short(hash), err)
	}
	if m.expired(&md, m.cfg.now()) {
		return nil, fmt.Errorf("session %s: expired: %w", short(hash), ErrNotFound)
	}
	st := &state{m: m, phase: phaseResumed, live: &live{
		hash: hash, meta: md, metaVer: e.Version, storedLast: md.lastActivity, persisted: true,
	}}
	if len(idOrHash) == IDLength {
		st.id = idOrHash
	}
	return &Session{st: st}, nil
}

func (m *Manager) hashOf(idOrHash string) (string, error) {
	switch {
	case ValidID(idOrHash):
		return hashID(idOrHash), nil
	case validHash(idOrHash):
		return idOrHash, nil
	}
	return "", fmt.Errorf("session: %q is neither a session ID nor a session hash: %w", idOrHash, ErrNotFound)
}

func short(hash string) string {
	if len(hash) > shortHashLength {
		return hash[:shortHashLength]
	}
	return hash
}

// Destroy destroys a session by ID or hash; reason is logged. It reports whether
// the session existed.
func (m *Manager) Destroy(ctx context.Context, idOrHash, reason string) (bool, error) {
	hash, err := m.hashOf(idOrHash)
	if err != nil {
		return false, err
	}
	e, err := m.meta.Get(ctx, hash)
	if errors.Is(err, cache.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("session: destroy: %w", err)
	}
	if err := m.destroyEntry(ctx, e, reason); err != nil {
		return false, err
	}
	return true, nil
}

// destroyEntry destroys the session of a metadata entry (a corrupt one loses only
// its metadata: its values cannot be found any more and stay until DestroyAll).
func (m *Manager) destroyEntry(ctx context.Context, e cache.Entry, reason string) error {
	md, derr := decodeMetadata(e.Value)
	if err := m.destroyStored(ctx, e.Key, md.storageID); err != nil {
		return fmt.Errorf("session: destroy %s: %w", short(e.Key), err)
	}
	if derr != nil {
		m.log.Warn("corrupt session metadata removed", "session", short(e.Key), "error", derr)
	}
	m.log.Info("session destroyed", "session", short(e.Key), "reason", reason)
	return nil
}

// All streams the active (unexpired) sessions' metadata, in no particular order.
// Corrupt metadata entries are skipped with a warning.
func (m *Manager) All(ctx context.Context) iter.Seq2[Metadata, error] {
	return func(yield func(Metadata, error) bool) {
		now := m.cfg.now()
		for e, err := range m.meta.All(ctx) {
			if err != nil {
				yield(Metadata{}, fmt.Errorf("session: listing: %w", err))
				return
			}
			md, err := decodeMetadata(e.Value)
			if err != nil {
				m.log.Warn("skipping corrupt session metadata", "session", short(e.Key), "error", err)
				continue
			}
			if m.expired(&md, now) {
				continue
			}
			if !yield(m.metadataOf(e.Key, &md), nil) {
				return
			}
		}
	}
}

// ByTag streams the active sessions tagged with tag.
func (m *Manager) ByTag(ctx context.Context, tag string) iter.Seq2[Metadata, error] {
	return func(yield func(Metadata, error) bool) {
		if err := cache.ValidateKey(tag); err != nil {
			yield(Metadata{}, fmt.Errorf("session: tag: %w", err))
			return
		}
		var keys []string
		for k, err := range m.meta.Tagged(ctx, tag) {
			if err != nil {
				yield(Metadata{}, fmt.Errorf("session: by tag: %w", err))
				return
			}
			keys = append(keys, k)
		}
		now := m.cfg.now()
		for len(keys) > 0 {
			batch := keys[:min(len(keys), 100)]
			keys = keys[len(batch):]
			entries, err := m.meta.GetMany(ctx, batch)
			if err != nil {
				yield(Metadata{}, fmt.Errorf("session: by tag: %w", err))
				return
			}
			for _, e := range entries {
				if !e.Exists() {
					continue
				}
				md, err := decodeMetadata(e.Value)
				if err != nil || m.expired(&md, now) {
					continue
				}
				if !yield(m.metadataOf(e.Key, &md), nil) {
					return
				}
			}
		}
	}
}

// DestroyByTag destroys every session tagged with tag (e.g. log a user out
// everywhere) and returns how many it destroyed.
func (m *Manager) DestroyByTag(ctx context.Context, tag, reason string) (int, error) {
	if err := cache.ValidateKey(tag); err != nil {
		return 0, fmt.Errorf("session: tag: %w", err)
	}
	var keys []string
	for k, err := range m.meta.Tagged(ctx, tag) {
		if err != nil {
			return 0, fmt.Errorf("session: destroy by tag: %w", err)
		}
		keys = append(keys, k)
	}
	n := 0
	for _, k := range keys {
		e, err := m.meta.Get(ctx, k)
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("session: destroy by tag: %w", err)
		}
		if err := m.destroyEntry(ctx, e, reason); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// DestroyAll destroys every session of the namespace and returns how many there
// were (Flow's destroyAll).
func (m *Manager) DestroyAll(ctx context.Context) (int, error) {
	n := 0
	for _, err := range m.meta.All(ctx) {
		if err != nil {
			return 0, fmt.Errorf("session: destroy all: %w", err)
		}
		n++
	}
	if err := m.data.Flush(ctx); err != nil {
		return 0, fmt.Errorf("session: destroy all: %w", err)
	}
	if err := m.meta.Flush(ctx); err != nil {
		return 0, fmt.Errorf("session: destroy all: %w", err)
	}
	m.log.Info("all sessions destroyed", "count", n)
	return n, nil
}
