package session

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/telemetry"
)

// Manager owns the sessions of one namespace of a cache store: it provides the
// HTTP middleware, the admin operations and garbage collection. Create it with
// [New] or through [Module].
type Manager struct {
	cfg   settings
	log   *slog.Logger
	store cache.Store // one record per session, keyed by its reference
	// tel records the OpenTelemetry metrics and spans; nil when off (store
	// is then not wrapped).
	tel *telemetry.Telemetry

	regMu  sync.Mutex
	bags   atomic.Pointer[map[string]struct{}]
	sealed atomic.Bool
	ev     events
}

// New returns a manager storing sessions in store, in the namespace
// cfg.Namespace (default "session", a Sub of store). The zero Config is a
// working one.
func New(store cache.Store, cfg Config) (*Manager, error) {
	if store == nil {
		return nil, errors.New("session: New: nil store")
	}
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	sub, err := store.Sub(s.namespace)
	if err != nil {
		return nil, fmt.Errorf("session: namespace: %w", err)
	}
	tel, err := telemetry.New(s.meterProvider, s.tracerProvider)
	if err != nil {
		return nil, fmt.Errorf("session: OpenTelemetry: %w", err)
	}
	m := &Manager{cfg: s, log: s.logger, store: tel.WrapStore(sub), tel: tel}
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

// refOf returns the reference named by a session ID or reference, and the ID's
// verifier when an ID was given.
func refOf(refOrID string) (ref, verifier string, err error) {
	switch {
	case ValidID(refOrID):
		ref, verifier = splitID(refOrID)
		return ref, verifier, nil
	case validRef(refOrID):
		return refOrID, "", nil
	}
	return "", "", fmt.Errorf("session: %q is neither a session ID nor a session reference: %w", refOrID, ErrNotFound)
}

// Session opens an existing session for admin tools, by its reference
// ([Metadata.Ref], as listed by [Manager.All]) or its ID. Nothing is written
// unless the caller changes it and calls [Session.Commit]. An unknown, malformed
// or expired session (or an ID whose secret does not match) matches ErrNotFound.
func (m *Manager) Session(ctx context.Context, refOrID string) (*Session, error) {
	m.seal()
	ref, verifier, err := refOf(refOrID)
	if err != nil {
		return nil, err
	}
	rec, err := m.store.Read(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", ref, err)
	}
	lv, err := m.open(rec, m.cfg.now())
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", ref, err)
	}
	if verifier != "" {
		if _, ok := lv.opens(verifier, m.cfg.now()); !ok {
			return nil, fmt.Errorf("session %s: the ID is not the session's current one: %w", ref, ErrNotFound)
		}
		lv.id = refOrID
	}
	return &Session{st: &state{m: m, phase: phaseResumed, live: lv}}, nil
}

// Destroy destroys a session by reference (one store call) or ID (checked
// first: a stale or forged ID destroys nothing); reason is logged. It reports
// whether the session existed.
func (m *Manager) Destroy(ctx context.Context, refOrID, reason string) (bool, error) {
	ref, verifier, err := refOf(refOrID)
	if err != nil {
		return false, err
	}
	if verifier != "" {
		// An ID must be the session's current one, as for Session: a stale or
		// forged ID destroys nothing.
		if _, err := m.Session(ctx, refOrID); errors.Is(err, ErrNotFound) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("session: destroy %s: %w", ref, err)
		}
	}
	if reason == "" {
		reason = ReasonAdmin
	}
	n, err := m.destroy(ctx, []string{ref}, reason)
	if err != nil {
		return false, fmt.Errorf("session: destroy %s: %w", ref, err)
	}
	if n > 0 {
		m.log.Info("session destroyed", "session", ref, "reason", reason)
	}
	return n > 0, nil
}

// destroy deletes the sessions of refs (one store call) and reports them to
// the listeners; with listeners it reads their metadata first (one more).
func (m *Manager) destroy(ctx context.Context, refs []string, reason string) (int, error) {
	if len(refs) == 0 {
		return 0, nil
	}
	if !m.listening() {
		var (
			n   int
			err error
		)
		if len(refs) == 1 {
			var ok bool
			if ok, err = m.store.Delete(ctx, refs[0]); ok {
				n = 1
			}
		} else {
			n, err = m.store.DeleteMany(ctx, refs)
		}
		m.tel.SessionsDestroyed(ctx, reason, n)
		return n, err
	}
	recs, err := m.store.ReadMany(ctx, refs, fieldMeta, fieldActivity)
	if err != nil {
		return 0, err
	}
	n, err := m.store.DeleteMany(ctx, refs)
	m.tel.SessionsDestroyed(ctx, reason, n)
	if err != nil {
		return n, err
	}
	now := m.cfg.now()
	for _, r := range recs {
		if r.Exists() {
			m.emit(Event{Kind: EventDestroyed, Ref: r.Key, Reason: reason, Time: now, Metadata: m.recordMetadata(r)})
		}
	}
	return n, nil
}

// recordMetadata is the metadata of a record read with its m and a fields (as
// much as can be decoded).
func (m *Manager) recordMetadata(r cache.Record) Metadata {
	var (
		md  metadata
		act activity
	)
	if f, ok := r.Field(fieldMeta); ok {
		md, _ = decodeMetadata(f.Value)
	}
	if f, ok := r.Field(fieldActivity); ok {
		act, _ = decodeActivity(f.Value)
	}
	if act.last.IsZero() {
		act.last = md.created
	}
	return m.metadataOf(r.Key, &md, &act, act.last, r.Tags)
}

// listBatch is how many sessions a listing reads per store round trip.
const listBatch = 100

// metadata reads the metadata of keys in one round trip and yields the live,
// readable ones.
func (m *Manager) metadata(ctx context.Context, keys []string, yield func(Metadata, error) bool) bool {
	recs, err := m.store.ReadMany(ctx, keys, fieldMeta, fieldActivity)
	if err != nil {
		yield(Metadata{}, fmt.Errorf("session: listing: %w", err))
		return false
	}
	now := m.cfg.now()
	for _, rec := range recs {
		if !rec.Exists() {
			continue
		}
		lv, err := m.open(rec, now)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				m.log.Warn("skipping an unreadable session record", "session", rec.Key, "error", err)
			}
			continue
		}
		if !yield(m.metadataOf(lv.ref, &lv.meta, &lv.act, lv.storedLast, lv.tags), nil) {
			return false
		}
	}
	return true
}

// list streams the metadata of the sessions whose references keys yields.
func (m *Manager) list(ctx context.Context, keys iter.Seq2[string, error]) iter.Seq2[Metadata, error] {
	return func(yield func(Metadata, error) bool) {
		batch := make([]string, 0, listBatch)
		for k, err := range keys {
			if err != nil {
				yield(Metadata{}, fmt.Errorf("session: listing: %w", err))
				return
			}
			if !validRef(k) {
				continue
			}
			if batch = append(batch, k); len(batch) == listBatch {
				if !m.metadata(ctx, batch, yield) {
					return
				}
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			m.metadata(ctx, batch, yield)
		}
	}
}

// All streams the active (unexpired) sessions' metadata, in no particular order,
// reading them in batches. Unreadable records are skipped with a warning.
func (m *Manager) All(ctx context.Context) iter.Seq2[Metadata, error] {
	return m.list(ctx, m.store.Keys(ctx))
}

// ByTag streams the active sessions tagged with tag.
func (m *Manager) ByTag(ctx context.Context, tag string) iter.Seq2[Metadata, error] {
	if err := cache.ValidateKey(tag); err != nil {
		return func(yield func(Metadata, error) bool) { yield(Metadata{}, fmt.Errorf("session: tag: %w", err)) }
	}
	return m.list(ctx, m.store.Tagged(ctx, tag))
}

// DestroyByTag destroys every session tagged with tag (e.g. log a user out
// everywhere), but those whose references are in except (e.g. the current
// session: "sign out other devices"), and returns how many it destroyed.
// reason ("" means ReasonByTag) goes to the log and the listeners.
func (m *Manager) DestroyByTag(ctx context.Context, tag, reason string, except ...string) (int, error) {
	if err := cache.ValidateKey(tag); err != nil {
		return 0, fmt.Errorf("session: tag: %w", err)
	}
	var keys []string
	for k, err := range m.store.Tagged(ctx, tag) {
		if err != nil {
			return 0, fmt.Errorf("session: destroy by tag: %w", err)
		}
		if !slices.Contains(except, k) {
			keys = append(keys, k)
		}
	}
	if reason == "" {
		reason = ReasonByTag
	}
	n, err := m.destroy(ctx, keys, reason)
	if err != nil {
		return n, fmt.Errorf("session: destroy by tag: %w", err)
	}
	if n > 0 {
		m.log.Info("sessions destroyed", "tag", tag, "count", n, "reason", reason)
	}
	return n, nil
}

// destroyBatch is how many sessions DestroyAll deletes per store call.
const destroyBatch = 1000

// DestroyAll destroys every session of the namespace and returns how many there
// were (Flow's destroyAll). progress, when not nil, is called after each batch
// with the count so far.
func (m *Manager) DestroyAll(ctx context.Context, progress func(destroyed int)) (int, error) {
	n := 0
	batch := make([]string, 0, destroyBatch)
	flush := func() error {
		d, err := m.destroy(ctx, batch, ReasonAdmin)
		n += d
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("session: destroy all: %w", err)
		}
		if progress != nil {
			progress(n)
		}
		return nil
	}
	for k, err := range m.store.Keys(ctx) {
		if err != nil {
			return n, fmt.Errorf("session: destroy all: %w", err)
		}
		if batch = append(batch, k); len(batch) == destroyBatch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return n, err
		}
	}
	m.log.Info("all sessions destroyed", "count", n)
	return n, nil
}
