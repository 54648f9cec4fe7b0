package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/fxsession/fxsession/cache"
	"github.com/vmihailenco/msgpack/v5"
)

// bagState is a bag loaded in this request: its values, encoded one by one.
type bagState struct {
	vals  map[string]msgpack.RawMessage
	dirty bool
}

// Value is one encoded value of a bag, as returned by [Bag.All].
type Value []byte

// Decode decodes the value into dst (a pointer); a mismatch wraps ErrDecode.
func (v Value) Decode(dst any) error { return decodeValue("bag value", v, dst) }

// Bag is a named attribute bag of a session (Symfony's AttributeBag): a small
// map of values stored as one field, loaded on first use and written at the next
// commit when it changed. Register bags with [RegisterBag] or
// [Manager.RegisterBag] before the manager starts serving.
//
// Reads on a request without a session see an empty bag; writes need a started
// session (ErrNotStarted).
type Bag struct {
	s    *Session
	name string
	err  error // why the bag cannot be used: no session, or an unknown name
}

// Bag returns the bag registered as name; an unregistered name wraps
// ErrUnknownBag, and a nil session gives ErrNoSession. The Bag returned with an
// error is not nil: its methods return that error.
func (s *Session) Bag(name string) (*Bag, error) {
	b := &Bag{s: s, name: name}
	switch {
	case s == nil || s.st == nil:
		b.err = ErrNoSession
	case !s.st.m.hasBag(name):
		b.err = fmt.Errorf("%w %q", ErrUnknownBag, name)
	}
	return b, b.err
}

// hasBag reports whether a bag called name is registered.
func (m *Manager) hasBag(name string) bool {
	_, ok := (*m.bags.Load())[name]
	return ok
}

// Name is the bag's registered name.
func (b *Bag) Name() string {
	if b == nil {
		return ""
	}
	return b.name
}

// usable reports why the bag cannot be used, if it cannot.
func (b *Bag) usable() error {
	switch {
	case b == nil || b.s == nil || b.s.st == nil:
		return ErrNoSession
	case b.err != nil:
		return b.err
	}
	return nil
}

// use checks that the bag can be used and takes its session's lock.
func (b *Bag) use() error {
	if err := b.usable(); err != nil {
		return err
	}
	return b.s.use()
}

// load returns the bag's state, reading it on first use; nil without a session.
// Called with the lock held.
func (b *Bag) load(ctx context.Context, write bool) (*bagState, error) {
	s := b.s
	if err := s.enter(ctx, write); err != nil {
		return nil, err
	}
	st := s.st
	if !st.started() {
		if write {
			return nil, ErrNotStarted
		}
		return nil, nil
	}
	if bs, ok := st.bags[b.name]; ok {
		return bs, nil
	}
	bs, err := st.loadBag(ctx, prefixBag+b.name)
	if err != nil {
		return nil, err
	}
	if st.bags == nil {
		st.bags = make(map[string]*bagState)
	}
	st.bags[b.name] = bs
	return bs, nil
}

// loadBag decodes a bag's field; a corrupt one is logged and starts empty.
func (st *state) loadBag(ctx context.Context, lk string) (*bagState, error) {
	bs := &bagState{}
	b, _, ok := st.field(lk)
	if !ok {
		return bs, nil
	}
	if err := decodeValue(lk, b, &bs.vals); err != nil {
		st.m.log.Warn("session bag unreadable; starting it empty", "session", st.ref, "bag", lk, "error", err)
		bs.vals = nil
	}
	return bs, nil
}

// stageBags encodes changed bags and the flash bag into the staged set.
func (st *state) stageBags() error {
	for name, bs := range st.bags {
		if err := st.stageBag(prefixBag+name, bs); err != nil {
			return err
		}
	}
	if st.flash != nil {
		return st.stageBag(fieldFlash, st.flash)
	}
	return nil
}

func (st *state) stageBag(lk string, bs *bagState) error {
	if !bs.dirty {
		return nil
	}
	bs.dirty = false
	if len(bs.vals) == 0 {
		st.stage(lk, nil, true)
		return nil
	}
	b, err := msgpack.Marshal(bs.vals)
	if err != nil {
		return fmt.Errorf("session: encoding %q: %w", lk, err)
	}
	if len(b) > st.m.cfg.maxPayload {
		return fmt.Errorf("%w: %q encodes to %d bytes, limit %d", cache.ErrValueTooLarge, lk, len(b), st.m.cfg.maxPayload)
	}
	st.stage(lk, b, false)
	return nil
}

// Get decodes the value under key into dst; a missing key matches ErrNotFound.
func (b *Bag) Get(ctx context.Context, key string, dst any) error {
	if err := b.use(); err != nil {
		return err
	}
	bs, err := b.load(ctx, false)
	var raw msgpack.RawMessage
	if bs != nil {
		raw = bs.vals[key]
	}
	b.s.unlock()
	if err != nil {
		return err
	}
	if raw == nil {
		return fmt.Errorf("session: bag %q: %q: %w", b.name, key, ErrNotFound)
	}
	return decodeValue(key, raw, dst)
}

// Set stores v (msgpack) under key.
func (b *Bag) Set(ctx context.Context, key string, v any) error {
	if err := b.usable(); err != nil {
		return err
	}
	enc, err := encodeValue(key, v, b.s.st.m.cfg.maxPayload)
	if err != nil {
		return err
	}
	if err := b.use(); err != nil {
		return err
	}
	defer b.s.unlock()
	bs, err := b.load(ctx, true)
	if err != nil {
		return err
	}
	if bs.vals == nil {
		bs.vals = make(map[string]msgpack.RawMessage)
	}
	bs.vals[key] = enc
	bs.dirty = true
	return nil
}

// Has reports whether key is set.
func (b *Bag) Has(ctx context.Context, key string) (bool, error) {
	if err := b.use(); err != nil {
		return false, err
	}
	defer b.s.unlock()
	bs, err := b.load(ctx, false)
	if err != nil || bs == nil {
		return false, err
	}
	_, ok := bs.vals[key]
	return ok, nil
}

// Remove deletes key (nothing without a session).
func (b *Bag) Remove(ctx context.Context, key string) error {
	if err := b.use(); err != nil {
		return err
	}
	defer b.s.unlock()
	bs, err := b.load(ctx, true)
	if errors.Is(err, ErrNotStarted) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, ok := bs.vals[key]; ok {
		delete(bs.vals, key)
		bs.dirty = true
	}
	return nil
}

// Keys returns the bag's keys, sorted.
func (b *Bag) Keys(ctx context.Context) ([]string, error) {
	if err := b.use(); err != nil {
		return nil, err
	}
	defer b.s.unlock()
	bs, err := b.load(ctx, false)
	if err != nil || bs == nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(bs.vals)), nil
}

// All returns a copy of the bag's values, still encoded (see [Value.Decode]).
func (b *Bag) All(ctx context.Context) (map[string]Value, error) {
	if err := b.use(); err != nil {
		return nil, err
	}
	defer b.s.unlock()
	bs, err := b.load(ctx, false)
	if err != nil || bs == nil {
		return map[string]Value{}, err
	}
	out := make(map[string]Value, len(bs.vals))
	for k, v := range bs.vals {
		out[k] = Value(slices.Clone(v))
	}
	return out, nil
}

// Clear removes every value of the bag (nothing without a session).
func (b *Bag) Clear(ctx context.Context) error {
	if err := b.use(); err != nil {
		return err
	}
	defer b.s.unlock()
	bs, err := b.load(ctx, true)
	if errors.Is(err, ErrNotStarted) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(bs.vals) > 0 {
		bs.vals = nil
		bs.dirty = true
	}
	return nil
}

// Flashes is the session's flash bag: messages by type ("notice", "error", ...)
// that live until they are read, typically shown once after a redirect. It is
// stored as one field. Reads on a request without a session see no messages;
// Add needs a started session (ErrNotStarted).
type Flashes struct {
	s *Session
}

// Flashes returns the session's flash bag.
func (s *Session) Flashes() *Flashes { return &Flashes{s: s} }

// load returns the flash bag's state (nil without a session). Lock held.
func (f *Flashes) load(ctx context.Context, write bool) (*bagState, error) {
	s := f.s
	if err := s.enter(ctx, write); err != nil {
		return nil, err
	}
	st := s.st
	if !st.started() {
		if write {
			return nil, ErrNotStarted
		}
		return nil, nil
	}
	if st.flash == nil {
		bs, err := st.loadBag(ctx, fieldFlash)
		if err != nil {
			return nil, err
		}
		st.flash = bs
	}
	return st.flash, nil
}

func (f *Flashes) messages(bs *bagState, typ string) []string {
	raw, ok := bs.vals[typ]
	if !ok {
		return nil
	}
	var msgs []string
	if err := decodeValue(typ, raw, &msgs); err != nil {
		f.s.st.m.log.Warn("flash messages unreadable; dropped", "type", typ, "error", err)
		return nil
	}
	return msgs
}

// Add appends a message of type typ.
func (f *Flashes) Add(ctx context.Context, typ, msg string) error {
	if err := f.s.use(); err != nil {
		return err
	}
	defer f.s.unlock()
	bs, err := f.load(ctx, true)
	if err != nil {
		return err
	}
	msgs := append(f.messages(bs, typ), msg)
	enc, err := msgpack.Marshal(msgs)
	if err != nil {
		return fmt.Errorf("session: flash: %w", err)
	}
	if bs.vals == nil {
		bs.vals = make(map[string]msgpack.RawMessage)
	}
	bs.vals[typ] = enc
	bs.dirty = true
	return nil
}

// Peek returns the messages of type typ and keeps them.
func (f *Flashes) Peek(ctx context.Context, typ string) ([]string, error) {
	if err := f.s.use(); err != nil {
		return nil, err
	}
	defer f.s.unlock()
	bs, err := f.load(ctx, false)
	if err != nil || bs == nil {
		return nil, err
	}
	return f.messages(bs, typ), nil
}

// Get returns the messages of type typ and removes them. On a read-only session
// it is ErrReadOnly (use Peek).
func (f *Flashes) Get(ctx context.Context, typ string) ([]string, error) {
	if err := f.s.use(); err != nil {
		return nil, err
	}
	defer f.s.unlock()
	bs, err := f.load(ctx, true)
	if errors.Is(err, ErrNotStarted) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	msgs := f.messages(bs, typ)
	if _, ok := bs.vals[typ]; ok {
		delete(bs.vals, typ)
		bs.dirty = true
	}
	return msgs, nil
}

// Has reports whether there are messages of type typ.
func (f *Flashes) Has(ctx context.Context, typ string) (bool, error) {
	if err := f.s.use(); err != nil {
		return false, err
	}
	defer f.s.unlock()
	bs, err := f.load(ctx, false)
	if err != nil || bs == nil {
		return false, err
	}
	_, ok := bs.vals[typ]
	return ok, nil
}

// PeekAll returns every message by type and keeps them.
func (f *Flashes) PeekAll(ctx context.Context) (map[string][]string, error) {
	if err := f.s.use(); err != nil {
		return nil, err
	}
	defer f.s.unlock()
	bs, err := f.load(ctx, false)
	if err != nil || bs == nil {
		return map[string][]string{}, err
	}
	out := make(map[string][]string, len(bs.vals))
	for typ := range bs.vals {
		if msgs := f.messages(bs, typ); msgs != nil {
			out[typ] = msgs
		}
	}
	return out, nil
}

// All returns every message by type and removes them. On a read-only session it
// is ErrReadOnly (use PeekAll).
func (f *Flashes) All(ctx context.Context) (map[string][]string, error) {
	if err := f.s.use(); err != nil {
		return nil, err
	}
	defer f.s.unlock()
	bs, err := f.load(ctx, true)
	if errors.Is(err, ErrNotStarted) {
		return map[string][]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(bs.vals))
	for typ := range bs.vals {
		if msgs := f.messages(bs, typ); msgs != nil {
			out[typ] = msgs
		}
	}
	if len(bs.vals) > 0 {
		bs.vals = nil
		bs.dirty = true
	}
	return out, nil
}
