package inject

import (
	"encoding"
	"fmt"
	"hash/maphash"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/fxsession/fxsession/internal/plain"
	"github.com/vmihailenco/msgpack/v5"
)

// DefaultMaxDepth is how deeply stored state may nest (containers within
// containers) unless [WithMaxDepth] says otherwise. Deeper input is refused while
// decoding, deeper state fails to encode (it usually means a pointer cycle).
const DefaultMaxDepth = 64

// Registry holds what plans need to know beyond a type itself: the registered
// implementations of interfaces and the repositories of entity types. It builds
// and caches the per-type codecs. Register everything first, then build plans:
// after the first [Registry.Plan] the registry is frozen and refuses more
// registrations. Plans and their Encode and Decode are safe for concurrent use.
type Registry struct {
	mu       sync.Mutex
	frozen   bool
	logger   *slog.Logger
	hints    Hints
	maxDepth int
	seed     maphash.Seed
	impls    map[reflect.Type][]*impl
	implSeen map[reflect.Type]bool
	repos    map[reflect.Type]*repository
	nodes    map[nodeKey]*node

	encPool sync.Pool // *encState
	decPool sync.Pool // *decState
}

// Hints are the fixes a [TypeError] suggests, worded for the caller's API. The
// scope package sets them to its own registration functions.
type Hints struct {
	// Repository: how to register a repository for an entity type (%s is the type).
	Repository string
	// Implementations: how to register the implementations of an interface (%s is the interface).
	Implementations string
	// Transient: how to keep a field out of the stored state.
	Transient string
}

// Option configures a Registry: [WithLogger], [WithMaxDepth], [WithHints].
type Option interface{ applyRegistry(*Registry) }

type registryOption func(*Registry)

func (f registryOption) applyRegistry(r *Registry) { f(r) }

// WithLogger sets the logger for warnings (entity references that no longer
// resolve). The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return registryOption(func(r *Registry) {
		if l != nil {
			r.logger = l
		}
	})
}

// WithMaxDepth sets how deeply stored state may nest; see [DefaultMaxDepth].
func WithMaxDepth(n int) Option {
	return registryOption(func(r *Registry) {
		if n > 0 {
			r.maxDepth = n
		}
	})
}

// WithHints sets the fixes suggested by startup errors.
func WithHints(h Hints) Option {
	return registryOption(func(r *Registry) {
		if h.Repository != "" {
			r.hints.Repository = h.Repository
		}
		if h.Implementations != "" {
			r.hints.Implementations = h.Implementations
		}
		if h.Transient != "" {
			r.hints.Transient = h.Transient
		}
	})
}

// NewRegistry returns an empty registry.
func NewRegistry(opts ...Option) *Registry {
	r := &Registry{
		logger:   slog.Default(),
		maxDepth: DefaultMaxDepth,
		seed:     maphash.MakeSeed(),
		impls:    map[reflect.Type][]*impl{},
		implSeen: map[reflect.Type]bool{},
		repos:    map[reflect.Type]*repository{},
		nodes:    map[nodeKey]*node{},
		hints: Hints{
			Repository:      "register a repository for %s (Registry.AddRepository)",
			Implementations: "register the implementations of %s (Registry.AddImplementations)",
			Transient:       "tag it `session:\"-\"` to keep it out of the stored state, or make it unexported",
		},
	}
	for _, o := range opts {
		if o != nil {
			o.applyRegistry(r)
		}
	}
	r.encPool.New = func() any { return newEncState(r) }
	r.decPool.New = func() any { return newDecState(r) }
	return r
}

// AddImplementations registers the concrete types that may be stored in fields of
// the interface type iface. Stored state only ever decodes into registered types.
func (r *Registry) AddImplementations(iface reflect.Type, impls ...reflect.Type) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frozen {
		return fmt.Errorf("inject: AddImplementations(%v) after the first plan was built: register everything first", iface)
	}
	if iface == nil || iface.Kind() != reflect.Interface {
		return fmt.Errorf("inject: AddImplementations: %v is not an interface type", iface)
	}
	for _, t := range impls {
		switch {
		case t == nil:
			return fmt.Errorf("inject: AddImplementations(%v): nil implementation (a nil interface value?)", iface)
		case t.Kind() == reflect.Interface:
			return fmt.Errorf("inject: AddImplementations(%v): %v is an interface, want a concrete type", iface, t)
		case !t.Implements(iface):
			return fmt.Errorf("inject: AddImplementations(%v): %v does not implement it", iface, t)
		}
		if slices.ContainsFunc(r.impls[iface], func(i *impl) bool { return i.t == t }) {
			continue
		}
		name := typeName(t)
		if slices.ContainsFunc(r.impls[iface], func(i *impl) bool { return i.name == name }) {
			return fmt.Errorf("inject: AddImplementations(%v): two implementations named %q", iface, name)
		}
		r.impls[iface] = append(r.impls[iface], &impl{name: name, t: t})
	}
	r.implSeen[iface] = true
	return nil
}

// AddRepository registers repo, a value with the methods of [Repository] (and
// optionally [BatchRepository]) for some entity type E, and returns E.
func (r *Registry) AddRepository(repo any) (reflect.Type, error) {
	rp, err := newRepository(repo)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frozen {
		return nil, fmt.Errorf("inject: AddRepository(%s) after the first plan was built: register everything first", rp.name)
	}
	if old := r.repos[rp.entity]; old != nil {
		return nil, fmt.Errorf("inject: two repositories for entity type %v: %s and %s", rp.entity, old.name, rp.name)
	}
	r.repos[rp.entity] = rp
	return rp.entity, nil
}

// typeName is the stable name under which an interface implementation is stored:
// the package path and name, with a leading "*" per pointer level.
func typeName(t reflect.Type) string {
	var stars string
	for t.Kind() == reflect.Pointer && t.Name() == "" {
		stars += "*"
		t = t.Elem()
	}
	if t.Name() == "" || t.PkgPath() == "" {
		return stars + t.String()
	}
	return stars + t.PkgPath() + "." + t.Name()
}

// ---- codec nodes ----

type kind uint8

const (
	kLeaf   kind = iota // encoded by msgpack itself
	kPtr                // pointer
	kSlice              // slice
	kArray              // array
	kMap                // map (walked so that keys are written in a stable order)
	kStruct             // struct with walked fields
	kIface              // non-empty interface with registered implementations
	kEntity             // type implementing Entity
)

type nodeKey struct {
	t     reflect.Type
	plain bool // the entity type's own content, not the reference decision
}

// node is the codec of one Go type. Nodes are built once (under Registry.mu) and
// never modified after their plan is returned.
type node struct {
	t      reflect.Type
	kind   kind
	walk   bool // false: the whole subtree is encoded and decoded by msgpack
	elem   *node
	key    *node
	fields []*field
	byName map[string]*field // for structs with many fields
	ent    *entityInfo
	impls  []*impl
	byType map[reflect.Type]*impl
	byImpl map[string]*impl

	selfWalk bool // needs walking for its own sake (map, entity, interface, skipped fields)

	// The compiled codec (codec.go): set once, when the first plan reaching
	// the node is built. compiled is false for fallback leaves (msgpack).
	enc      encFn
	dec      decFn // assigns the value at its address
	decz     decFn // dec for an address known to hold the zero value
	compiled bool

	bad      string
	fix      string
	problems []problem
}

type problem struct {
	path, problem, fix string
}

type field struct {
	key       string // stored name
	goName    string // for messages
	index     []int
	omitEmpty bool
	node      *node

	// For the compiled codec (codec.go).
	offset uintptr                   // from the start of the struct
	leaf   leafKind                  // a leaf the struct codecs inline
	keyEnc []byte                    // key, encoded
	empty  func(unsafe.Pointer) bool // omitempty test; nil without omitempty
}

type entityInfo struct {
	t       reflect.Type
	nilable bool // t is a pointer, map or slice
	name    string
	inner   *node // the entity's content, encoded when it is stored whole
	repo    *repository
	hasher  *entityHasher // what an entity cache memoizes snapshots with

	// eq compares two values of the entity's content (the struct a pointer
	// entity points to): set for entities holding plain values only, encoded
	// from their fields (see encState.unchanged); nil otherwise.
	eq func(p, q unsafe.Pointer) bool
}

type impl struct {
	name    string
	t       reflect.Type
	node    *node
	direct  bool   // stored in an interface's data word (compiled codec)
	nameEnc []byte // name, encoded
}

var (
	customEncoderType   = reflect.TypeFor[msgpack.CustomEncoder]()
	customDecoderType   = reflect.TypeFor[msgpack.CustomDecoder]()
	marshalerType       = reflect.TypeFor[msgpack.Marshaler]()
	unmarshalerType     = reflect.TypeFor[msgpack.Unmarshaler]()
	binaryMarshalerType = reflect.TypeFor[encoding.BinaryMarshaler]()
	binaryUnmarshalType = reflect.TypeFor[encoding.BinaryUnmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func implementsEither(t, iface reflect.Type) bool {
	return t.Implements(iface) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface))
}

// custom reports whether msgpack encodes t through a method of its own; such
// types are opaque leaves (their fields are not inspected).
func custom(t reflect.Type) bool {
	if t.Kind() == reflect.Interface {
		return false
	}
	return implementsEither(t, customEncoderType) || implementsEither(t, marshalerType) ||
		implementsEither(t, binaryMarshalerType) || implementsEither(t, textMarshalerType)
}

func customDecodes(t reflect.Type) bool {
	return implementsEither(t, customDecoderType) || implementsEither(t, unmarshalerType) ||
		implementsEither(t, binaryUnmarshalType) || implementsEither(t, textUnmarshalerType)
}

// contentEqual returns plain.Equal for the content of the entity type t (the
// struct a pointer points to), or nil when t's content holds references or
// types that encode through methods of their own or as entities.
func contentEqual(t reflect.Type) func(p, q unsafe.Pointer) bool {
	c := t
	if c.Kind() == reflect.Pointer {
		c = c.Elem()
	}
	return plain.Equal(c, func(x reflect.Type) bool { return custom(x) || x != c && isEntity(x) })
}

func isEntity(t reflect.Type) bool {
	return t.Kind() != reflect.Interface && t.Implements(entityType)
}

// node returns the codec node of t, building it (and what it reaches) if needed.
// New nodes are appended to *created; the caller finishes them with finish.
func (r *Registry) node(t reflect.Type, plain bool, created *[]*node) *node {
	if plain && !isEntity(t) {
		plain = false
	}
	k := nodeKey{t, plain}
	if n := r.nodes[k]; n != nil {
		return n
	}
	n := &node{t: t}
	r.nodes[k] = n
	*created = append(*created, n)

	if !plain && isEntity(t) {
		n.kind = kEntity
		n.selfWalk = true
		n.ent = &entityInfo{t: t, name: typeName(t), repo: r.repos[t]}
		n.ent.hasher = &entityHasher{reg: r, ent: n.ent}
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice:
			n.ent.nilable = true
		}
		n.ent.inner = r.node(t, true, created)
		n.ent.eq = contentEqual(t)
		return n
	}
	if custom(t) {
		n.kind = kLeaf
		if !customDecodes(t) {
			n.bad = "it has a marshalling method (MarshalMsgpack, EncodeMsgpack, MarshalBinary or MarshalText) but no matching unmarshalling method"
			n.fix = "add the unmarshalling method, or " + r.hints.Transient
		}
		return n
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		n.kind = kLeaf
	case reflect.Complex64, reflect.Complex128:
		n.bad = "complex numbers cannot be stored"
		n.fix = "store the real and imaginary parts in two float fields, or " + r.hints.Transient
	case reflect.Func:
		n.bad = "a func cannot be stored"
		n.fix = "if the container gives it, tag it `inject:\"\"` or take it as a constructor parameter; else " + r.hints.Transient
	case reflect.Chan:
		n.bad = "a channel cannot be stored"
		n.fix = r.hints.Transient
	case reflect.UnsafePointer:
		n.bad = "an unsafe.Pointer cannot be stored"
		n.fix = r.hints.Transient
	case reflect.Pointer:
		n.kind = kPtr
		n.elem = r.node(t.Elem(), plain, created)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !custom(t.Elem()) {
			n.kind = kLeaf // []byte: msgpack bin
			break
		}
		n.kind = kSlice
		n.elem = r.node(t.Elem(), false, created)
	case reflect.Array:
		n.kind = kArray
		n.elem = r.node(t.Elem(), false, created)
	case reflect.Map:
		n.kind = kMap
		n.selfWalk = true
		n.key = r.node(t.Key(), false, created)
		n.elem = r.node(t.Elem(), false, created)
	case reflect.Interface:
		if t.NumMethod() == 0 {
			n.kind = kLeaf // msgpack's generic values: nil, bool, numbers, strings, []any, map[string]any
			break
		}
		n.kind = kIface
		n.selfWalk = true
		if len(r.impls[t]) == 0 {
			n.bad = "an interface with no registered implementations cannot be stored (only registered types are ever decoded)"
			n.fix = fmt.Sprintf(r.hints.Implementations, t) + ", or " + r.hints.Transient
			break
		}
		n.byType = map[reflect.Type]*impl{}
		n.byImpl = map[string]*impl{}
		for _, im := range r.impls[t] {
			c := &impl{name: im.name, t: im.t, node: r.node(im.t, false, created)}
			n.impls = append(n.impls, c)
			n.byType[c.t] = c
			n.byImpl[c.name] = c
		}
	case reflect.Struct:
		n.kind = kStruct
		r.structFields(n, t, nil, "", created)
		if len(n.fields) > 8 {
			n.byName = make(map[string]*field, len(n.fields))
			for _, f := range n.fields {
				n.byName[f.key] = f
			}
		}
	default:
		n.bad = fmt.Sprintf("kind %s cannot be stored", t.Kind())
		n.fix = r.hints.Transient
	}
	return n
}

type msgpackTag struct {
	name    string
	options string
}

func parseMsgpackTag(tag string) msgpackTag {
	name, opts, _ := strings.Cut(tag, ",")
	return msgpackTag{name: name, options: opts}
}

func (t msgpackTag) has(opt string) bool {
	for o := range strings.SplitSeq(t.options, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// inlines reports whether an anonymous field is flattened into its parent, as
// msgpack does for embedded structs without a name.
func inlines(f reflect.StructField, mt msgpackTag) bool {
	return f.Anonymous && mt.name == "" && !mt.has("noinline") && f.Type.Kind() == reflect.Struct &&
		!custom(f.Type) && !isEntity(f.Type)
}

// structFields collects the stored fields of a nested struct type: exported, not
// tagged `msgpack:"-"` or `session:"-"`, embedded structs flattened.
func (r *Registry) structFields(n *node, t reflect.Type, index []int, prefix string, created *[]*node) {
	for i := range t.NumField() {
		f := t.Field(i)
		mt := parseMsgpackTag(f.Tag.Get("msgpack"))
		st := f.Tag.Get("session")
		goName := prefix + f.Name
		if _, ok := f.Tag.Lookup("inject"); ok {
			n.problems = append(n.problems, problem{path: goName, problem: "`inject` tags are only read on the fields of the session-scoped type itself",
				fix: "move the dependency to the session-scoped type, or remove the tag"})
			continue
		}
		if mt.name == "-" {
			continue
		}
		if st == "-" {
			n.selfWalk = true // msgpack would store it: walk this struct ourselves
			continue
		}
		if st != "" {
			n.problems = append(n.problems, problem{path: goName, problem: fmt.Sprintf("`session:%q` is only read on the fields of the session-scoped type itself", st),
				fix: "use `session:\"-\"` here, or move the field"})
		}
		idx := append(slices.Clone(index), i)
		if inlines(f, mt) {
			r.structFields(n, f.Type, idx, goName+".", created)
			continue
		}
		if !f.IsExported() {
			continue
		}
		key := mt.name
		if key == "" {
			key = f.Name
		}
		if slices.ContainsFunc(n.fields, func(o *field) bool { return o.key == key }) {
			continue // shadowed, as in msgpack
		}
		n.fields = append(n.fields, &field{key: key, goName: goName, index: idx, omitEmpty: mt.has("omitempty"), node: r.node(f.Type, false, created)})
	}
}

func (n *node) children(yield func(*node) bool) {
	if n.elem != nil && !yield(n.elem) {
		return
	}
	if n.key != nil && !yield(n.key) {
		return
	}
	for _, f := range n.fields {
		if !yield(f.node) {
			return
		}
	}
	if n.ent != nil && !yield(n.ent.inner) {
		return
	}
	for _, im := range n.impls {
		if !yield(im.node) {
			return
		}
	}
}

// finish computes the walk flags of newly created nodes: a node is walked when
// it or anything it reaches needs walking, or when it is part of a type cycle
// (so that the depth guard catches pointer cycles msgpack would recurse into).
func finish(created []*node) {
	isNew := make(map[*node]bool, len(created))
	for _, n := range created {
		isNew[n] = true
		n.walk = n.selfWalk
	}
	for _, n := range created {
		if !n.walk && reaches(n, n, isNew) {
			n.walk = true
		}
	}
	for changed := true; changed; {
		changed = false
		for _, n := range created {
			if n.walk {
				continue
			}
			for c := range n.children {
				if c.walk {
					n.walk = true
					changed = true
					break
				}
			}
		}
	}
}

// reaches reports whether target is reachable from the children of from, looking
// only through new nodes (old nodes cannot point back to new ones).
func reaches(from, target *node, isNew map[*node]bool) bool {
	seen := map[*node]bool{}
	stack := []*node{from}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for c := range n.children {
			if c == target {
				return true
			}
			if isNew[c] && !seen[c] {
				seen[c] = true
				stack = append(stack, c)
			}
		}
	}
	return false
}

// validate reports every problem reachable from n, each once.
func (r *Registry) validate(root reflect.Type, n *node, path string, seen map[*node]bool, errs *[]error) {
	if seen[n] {
		return
	}
	seen[n] = true
	if n.bad != "" {
		*errs = append(*errs, &TypeError{Type: root, Path: path, FieldType: n.t, Problem: n.bad, Fix: n.fix})
		return
	}
	for _, p := range n.problems {
		*errs = append(*errs, &TypeError{Type: root, Path: joinPath(path, p.path), Problem: p.problem, Fix: p.fix})
	}
	switch n.kind {
	case kEntity:
		if n.ent.repo == nil {
			*errs = append(*errs, &TypeError{Type: root, Path: path, FieldType: n.t,
				Problem: fmt.Sprintf("%s is an entity (it has EntityID() string) but no repository is registered for it", n.t),
				Fix:     fmt.Sprintf(r.hints.Repository, n.t)})
		}
		r.validate(root, n.ent.inner, path, seen, errs)
	case kPtr:
		r.validate(root, n.elem, path, seen, errs)
	case kSlice, kArray:
		r.validate(root, n.elem, path+"[]", seen, errs)
	case kMap:
		if n.key.walk {
			*errs = append(*errs, &TypeError{Type: root, Path: path, FieldType: n.t,
				Problem: fmt.Sprintf("map key type %s holds entities, interfaces or maps; map keys must be plain values", n.key.t),
				Fix:     "key the map by the entity's ID (a string) instead"})
		}
		r.validate(root, n.key, path+"{key}", seen, errs)
		r.validate(root, n.elem, path+"[]", seen, errs)
	case kStruct:
		for _, f := range n.fields {
			r.validate(root, f.node, joinPath(path, f.goName), seen, errs)
		}
	case kIface:
		for _, im := range n.impls {
			r.validate(root, im.node, path+"("+im.t.String()+")", seen, errs)
		}
	}
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
