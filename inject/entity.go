package inject

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"unsafe"
)

// Entity marks a type as an entity: an object with an identity that lives in a
// repository (a database row, a catalog item). Session state that holds an entity
// stores it as a reference (its ID) while it is unchanged and whole when it was
// modified or is new; see the package documentation.
//
// The entity type is the type that implements Entity, usually a pointer such as
// *shop.Product.
type Entity interface {
	// EntityID returns the entity's identity in its repository. An empty ID marks
	// an entity that is not persisted yet: it is always stored whole.
	EntityID() string
}

// Repository finds entities of type E by ID. A missing entity is reported as a nil
// (zero) E with a nil error, or as an error matching [ErrEntityNotFound]; any
// other error fails the load.
//
// Repositories should return a fresh value per call: the session-scoped object that
// receives it may modify it.
type Repository[E Entity] interface {
	Find(ctx context.Context, id string) (E, error)
}

// BatchRepository is a Repository that can find many entities in one query. The
// result omits IDs that were not found. When a repository has FindMany, loading an
// object fetches all its references of that type in one call.
type BatchRepository[E Entity] interface {
	Repository[E]
	FindMany(ctx context.Context, ids []string) (map[string]E, error)
}

var (
	entityType  = reflect.TypeFor[Entity]()
	contextType = reflect.TypeFor[context.Context]()
	errorType   = reflect.TypeFor[error]()
	stringType  = reflect.TypeFor[string]()
)

// repository is the type-erased form of a Repository, called through reflection
// (only on loads and on commits that meet an entity of unknown state).
type repository struct {
	entity   reflect.Type
	name     string // the repository's type, for messages
	find     reflect.Value
	findMany reflect.Value // invalid when the repository has no FindMany
	direct   valueFetcher  // a Cache: called without reflection
}

// valueFetcher is implemented by [Cache].
type valueFetcher interface {
	// fetchValues finds the entities; with h non-nil, each one served from the
	// cache comes with the hash h gives its cached version, memoized per entry.
	fetchValues(ctx context.Context, ids []string, h *entityHasher) (map[string]entityValue, error)
}

// entityValue is an entity a repository returned and, from an entity cache,
// the snapshot it memoized for the entity (nil otherwise).
type entityValue struct {
	v    reflect.Value
	snap *snapMemo
}

// snapMemo is a snapshot an entity cache memoized for one registry's entity
// type (by): the hash of a cached value's encoding (what [Registry.snapshot]
// records) and the snapshots of the entities nested in it. It never changes.
type snapMemo struct {
	by     *entityInfo
	hash   uint64
	nested []entitySnap

	// base is the content of the value the snapshot was made from (the struct
	// a pointer entity points to), never changed, for entity types with
	// entityInfo.eq: a copy identical to it is unchanged without encoding it.
	base unsafe.Pointer
}

func newRepository(repo any) (*repository, error) {
	if repo == nil {
		return nil, errors.New("inject: nil repository")
	}
	v := reflect.ValueOf(repo)
	r := &repository{name: v.Type().String()}
	find := v.MethodByName("Find")
	if !find.IsValid() {
		return nil, fmt.Errorf("inject: repository %s has no method Find(ctx context.Context, id string) (E, error)", r.name)
	}
	ft := find.Type()
	if ft.NumIn() != 2 || ft.In(0) != contextType || ft.In(1) != stringType || ft.NumOut() != 2 || ft.Out(1) != errorType {
		return nil, fmt.Errorf("inject: repository %s: Find has signature %s, want Find(ctx context.Context, id string) (E, error)", r.name, ft)
	}
	r.entity = ft.Out(0)
	if !r.entity.Implements(entityType) {
		return nil, fmt.Errorf("inject: repository %s: Find returns %s, which has no method EntityID() string", r.name, r.entity)
	}
	r.find = find
	if fm := v.MethodByName("FindMany"); fm.IsValid() {
		mt := fm.Type()
		if mt.NumIn() != 2 || mt.In(0) != contextType || mt.In(1) != reflect.TypeFor[[]string]() ||
			mt.NumOut() != 2 || mt.Out(1) != errorType || mt.Out(0) != reflect.MapOf(stringType, r.entity) {
			return nil, fmt.Errorf("inject: repository %s: FindMany has signature %s, want FindMany(ctx context.Context, ids []string) (map[string]%s, error)", r.name, mt, r.entity)
		}
		r.findMany = fm
	}
	r.direct, _ = repo.(valueFetcher)
	return r, nil
}

// fetch finds the entities with the given (distinct, non-empty) IDs. Missing ones
// are absent from the result.
// With h non-nil, a cache also returns the memoized hashes of what it serves.
func (r *repository) fetch(ctx context.Context, ids []string, h *entityHasher) (map[string]entityValue, error) {
	if r.direct != nil {
		out, err := r.direct.fetchValues(ctx, ids, h)
		if err != nil {
			return nil, fmt.Errorf("inject: %s.FindMany: %w", r.name, err)
		}
		return out, nil
	}
	out := make(map[string]entityValue, len(ids))
	if r.findMany.IsValid() {
		res := r.findMany.Call([]reflect.Value{reflect.ValueOf(&ctx).Elem(), reflect.ValueOf(ids)})
		if err, _ := res[1].Interface().(error); err != nil {
			return nil, fmt.Errorf("inject: %s.FindMany: %w", r.name, err)
		}
		it := res[0].MapRange()
		for it.Next() {
			if v := it.Value(); !isNilish(v) {
				out[it.Key().String()] = entityValue{v: v}
			}
		}
		return out, nil
	}
	cv := reflect.ValueOf(&ctx).Elem()
	for _, id := range ids {
		res := r.find.Call([]reflect.Value{cv, reflect.ValueOf(id)})
		if err, _ := res[1].Interface().(error); err != nil {
			if errors.Is(err, ErrEntityNotFound) {
				continue
			}
			return nil, fmt.Errorf("inject: %s.Find(%q): %w", r.name, id, err)
		}
		if v := res[0]; !isNilish(v) {
			out[id] = entityValue{v: v}
		}
	}
	return out, nil
}

func isNilish(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		return v.IsNil()
	}
	return v.IsZero()
}
