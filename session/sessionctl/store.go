package sessionctl

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sort"

	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/fxsession/fxsession/session"
)

// This file is the only one that calls the session package's administration
// surface (Manager.All, Manager.Session, Manager.Entries, ...) and knows the form
// of a stored value's key: when that surface changes, this file changes.

// sessionInfo is what list and show print about one session.
type sessionInfo struct {
	Ref      string
	Created  time.Time
	LastUsed time.Time
	Expires  time.Time // zero: never
	Lifetime time.Duration
	Tags     []string
	Device   string // the User-Agent of the last recorded activity
	Address  string // the client's address as recorded ("" when not)
	Size     int    // bytes of stored values
}

func infoOf(md session.Metadata) sessionInfo {
	return sessionInfo{
		Ref: md.Ref, Created: md.Created, LastUsed: md.LastUsed, Expires: md.Expires,
		Lifetime: md.Lifetime, Tags: md.Tags, Device: md.Device, Address: md.Address,
	}
}

// allSessions streams the active sessions with the size of their values.
func allSessions(ctx context.Context, m *session.Manager) iter.Seq2[sessionInfo, error] {
	return func(yield func(sessionInfo, error) bool) {
		for md, err := range m.All(ctx) {
			if err != nil {
				yield(sessionInfo{}, err)
				return
			}
			info := infoOf(md)
			size, err := m.Size(ctx, md.Ref)
			if err != nil && !errors.Is(err, session.ErrNotFound) { // destroyed meanwhile: size 0
				yield(sessionInfo{}, err)
				return
			}
			info.Size = size
			if !yield(info, nil) {
				return
			}
		}
	}
}

// refs collects the references of the active sessions, reporting progress.
func refs(ctx context.Context, m *session.Manager, p *progress) ([]string, error) {
	var out []string
	for md, err := range m.All(ctx) {
		if err != nil {
			return nil, err
		}
		out = append(out, md.Ref)
		p.add(1)
	}
	return out, nil
}

// Kinds of stored values, from session.StoredValue's kind.
var kinds = map[string]Kind{"value": KindValue, "object": KindObject, "bag": KindBag, "flashes": KindFlashes}

// inspect reads one session (by ID or reference): its metadata and every stored
// value, raw. It writes nothing.
func inspect(ctx context.Context, m *session.Manager, idOrRef string) (sessionInfo, []Value, error) {
	all, err := m.Entries(ctx, idOrRef)
	if err != nil {
		return sessionInfo{}, nil, plainNotFound(idOrRef, err)
	}
	// The session's own metadata and activity are shown as its metadata; the
	// size is the whole record's, as list shows it.
	var (
		entries []session.StoredValue
		size    int
	)
	for _, e := range all {
		size += e.Size()
		if e.Kind != "metadata" && e.Kind != "activity" {
			entries = append(entries, e)
		}
	}
	// A bag is readable only once registered, which the manager allows before
	// its first session: register the bags this session holds (best effort; a
	// manager that already serves keeps its own registrations).
	for _, e := range entries {
		if kinds[e.Kind] == KindBag {
			_ = m.RegisterBag(e.Name)
		}
	}
	s, err := m.Session(ctx, idOrRef)
	if err != nil {
		return sessionInfo{}, nil, plainNotFound(idOrRef, err)
	}
	md, err := s.Metadata(ctx)
	if err != nil {
		return sessionInfo{}, nil, err
	}
	info := infoOf(md)
	info.Size = size
	sort.Slice(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
	var values []Value
	for _, e := range entries {
		name := e.Name
		v := Value{Key: e.Key, Kind: kinds[e.Kind], Name: name, Size: e.Size()}
		switch v.Kind {
		case KindValue:
			var raw msgpack.RawMessage
			v.err = s.Get(ctx, name, &raw)
			v.Data = session.Value(raw)
		case KindObject:
			v.Data = session.Value(e.Value)
		case KindFlashes:
			v.Name = "flashes"
			flashes, err := s.Flashes().PeekAll(ctx) // peek: show consumes nothing
			v.known, v.err = flashes, err
		case KindBag:
			bagValues, err := readBag(ctx, s, v)
			if err != nil {
				v.err = err
				break
			}
			values = append(values, bagValues...)
			continue
		default:
			v.Kind, v.Name = KindOther, e.Key
			v.err = errors.New("a kind of value this command does not know")
		}
		values = append(values, v)
	}
	return info, values, nil
}

// readBag returns a bag's members as values of their own.
func readBag(ctx context.Context, s *session.Session, bag Value) ([]Value, error) {
	b, err := s.Bag(bag.Name)
	if err != nil {
		return nil, err
	}
	members, err := b.All(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Value, 0, len(keys))
	for _, k := range keys {
		out = append(out, Value{Key: bag.Key, Kind: KindBag, Name: bag.Name, Field: k, Size: len(members[k]), Data: members[k]})
	}
	return out, nil
}

func destroy(ctx context.Context, m *session.Manager, idOrRef, reason string) (bool, error) {
	ok, err := m.Destroy(ctx, idOrRef, reason)
	return ok, plainNotFound(idOrRef, err)
}

func destroyTag(ctx context.Context, m *session.Manager, tag, reason string) (int, error) {
	return m.DestroyByTag(ctx, tag, reason)
}

// destroyRest destroys whatever sessions remain in the namespace (ones started
// during destroy-all; expired ones are invisible to it and left to gc).
func destroyRest(ctx context.Context, m *session.Manager) (int, error) {
	return m.DestroyAll(ctx, nil)
}

func collect(ctx context.Context, m *session.Manager) (int, error) {
	return m.CollectGarbage(ctx)
}

// notFoundError: no active session has the name. It matches session.ErrNotFound.
type notFoundError struct{ name string }

func (e notFoundError) Error() string {
	return fmt.Sprintf("no session %s: it never existed, was destroyed or has expired", e.name)
}

func (e notFoundError) Is(target error) bool { return target == session.ErrNotFound }

// notFound says that no session has the name.
func notFound(name string) error { return notFoundError{name} }

// plainNotFound replaces the store's wording of a missing session with one a
// person understands; other errors pass unchanged.
func plainNotFound(name string, err error) error {
	if errors.Is(err, session.ErrNotFound) {
		return notFound(name)
	}
	return err
}
