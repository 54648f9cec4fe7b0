package inject

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/fxsession/fxsession/internal/plain"
)

// FieldKind says what a plan does with a field.
type FieldKind uint8

const (
	// State fields are stored: exported, not a dependency, not transient.
	State FieldKind = iota
	// Dependency fields hold what the container gave: tagged `inject:""`, or of the
	// type of a constructor parameter (see [Dependencies]). Never stored; after a
	// load they hold the container's live values again.
	Dependency
	// Transient fields are tagged `session:"-"` or `msgpack:"-"`: never stored, they
	// come back at the value the constructor gives them.
	Transient
	// Unexported fields are never stored either (msgpack cannot reach them); they
	// come back at the value the constructor gives them.
	Unexported
)

func (k FieldKind) String() string {
	switch k {
	case State:
		return "state"
	case Dependency:
		return "dependency"
	case Transient:
		return "transient"
	case Unexported:
		return "unexported"
	}
	return fmt.Sprintf("FieldKind(%d)", uint8(k))
}

// Field describes one field of a planned type.
type Field struct {
	// Name is the Go field name; fields of embedded structs are "Embedded.Name".
	Name string
	// Key is the name the field is stored under (its msgpack tag name or its Go
	// name); empty for fields that are not stored.
	Key string
	// Index is the field's index path for reflect.Value.FieldByIndex.
	Index []int
	// Type is the field's type.
	Type reflect.Type
	// Kind says whether the field is stored.
	Kind FieldKind
	// Autostart marks state tagged `session:"autostart"`: a change to it during a
	// request starts the session.
	Autostart bool
	// Inject marks a dependency tagged `inject`; InjectName and InjectOptional are
	// its options (`inject:"name=primary,optional"`).
	Inject         bool
	InjectName     string
	InjectOptional bool

	omitEmpty bool
}

// PlanOption configures one plan: [Dependencies].
type PlanOption interface{ applyPlan(*planConfig) }

type planOption func(*planConfig)

func (f planOption) applyPlan(c *planConfig) { f(c) }

type planConfig struct {
	deps map[reflect.Type]bool
}

// Dependencies declares types whose fields are dependencies, not state: the
// parameter types of the type's constructor (and of other container-managed
// objects). Basic types (bool, numbers, strings) are never treated this way, so a
// constructor taking a string does not turn every string field into a dependency.
func Dependencies(types ...reflect.Type) PlanOption {
	return planOption(func(c *planConfig) {
		for _, t := range types {
			if t != nil && !plain.Scalar(t) {
				c.deps[t] = true
			}
		}
	})
}

// Plan is the storage plan of one pointer-to-struct type: which fields are state,
// dependencies and transient, and how state (including entities) is encoded.
// Build plans once, at startup, with [Registry.Plan].
type Plan struct {
	reg         *Registry
	t           reflect.Type
	root        *node // struct node over the state fields
	auto        *node // struct node over the autostart fields, nil if none
	fields      []Field
	hasEntities bool
	size        atomic.Int64 // length of the last encoding: the next one's capacity
}

// Type is the planned type (a pointer to a struct).
func (p *Plan) Type() reflect.Type { return p.t }

// Fields lists every field of the struct (embedded structs flattened).
func (p *Plan) Fields() []Field { return slices.Clone(p.fields) }

// HasEntities reports whether the stored state can hold entities. Encode and
// Decode need a [Tracker] only then.
func (p *Plan) HasEntities() bool { return p.hasEntities }

// HasAutostart reports whether a field is tagged `session:"autostart"`.
func (p *Plan) HasAutostart() bool { return p.auto != nil }

// Plan builds (or returns the cached codecs for) the plan of t, which must be a
// pointer to a struct. It fails with an error matching [ErrInvalidType] that
// names every field that cannot be stored and the fix.
func (r *Registry) Plan(t reflect.Type, opts ...PlanOption) (*Plan, error) {
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %v is not a pointer to a struct", ErrInvalidType, t)
	}
	cfg := planConfig{deps: map[reflect.Type]bool{}}
	for _, o := range opts {
		if o != nil {
			o.applyPlan(&cfg)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = true

	p := &Plan{reg: r, t: t}
	var errs []error
	var created []*node
	root := &node{t: t.Elem(), kind: kStruct, walk: true}
	var auto *node
	p.fields = classify(t, t.Elem(), nil, "", cfg.deps, &errs)
	for _, f := range p.fields {
		if f.Kind != State {
			continue
		}
		if slices.ContainsFunc(root.fields, func(o *field) bool { return o.key == f.Key }) {
			errs = append(errs, &TypeError{Type: t, Path: f.Name, Problem: fmt.Sprintf("another field is stored under the key %q too", f.Key),
				Fix: "give one of them another name with a `msgpack:\"name\"` tag"})
			continue
		}
		sf := &field{key: f.Key, goName: f.Name, index: f.Index, omitEmpty: f.omitEmpty, node: r.node(f.Type, false, &created)}
		root.fields = append(root.fields, sf)
		if f.Autostart {
			if auto == nil {
				auto = &node{t: t.Elem(), kind: kStruct, walk: true}
			}
			auto.fields = append(auto.fields, sf)
		}
	}
	finish(created)
	if len(root.fields) > 8 {
		root.byName = make(map[string]*field, len(root.fields))
		for _, f := range root.fields {
			root.byName[f.key] = f
		}
	}
	seen := map[*node]bool{}
	for _, f := range root.fields {
		r.validate(t, f.node, f.goName, seen, &errs)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.root, p.auto = root, auto
	p.hasEntities = reachesEntity(root)
	r.compileAll(root)
	if auto != nil {
		r.compileAll(auto)
	}
	return p, nil
}

func reachesEntity(root *node) bool {
	seen := map[*node]bool{}
	stack := []*node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.kind == kEntity {
			return true
		}
		for c := range n.children {
			if !seen[c] {
				seen[c] = true
				stack = append(stack, c)
			}
		}
	}
	return false
}

// Fields classifies the fields of t (a pointer to a struct) as [Registry.Plan]
// would, without building codecs or checking that state can be stored: a
// container integration uses it to learn the `inject`-tagged fields before it
// has registered everything a plan needs. Errors are malformed tags.
func Fields(t reflect.Type, opts ...PlanOption) ([]Field, error) {
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %v is not a pointer to a struct", ErrInvalidType, t)
	}
	cfg := planConfig{deps: map[reflect.Type]bool{}}
	for _, o := range opts {
		if o != nil {
			o.applyPlan(&cfg)
		}
	}
	var errs []error
	fields := classify(t, t.Elem(), nil, "", cfg.deps, &errs)
	return fields, errors.Join(errs...)
}

// classify sorts the fields of the struct t (the plan of root) into Fields.
func classify(root, t reflect.Type, index []int, prefix string, deps map[reflect.Type]bool, errs *[]error) (out []Field) {
	for i := range t.NumField() {
		sf := t.Field(i)
		idx := append(slices.Clone(index), i)
		name := prefix + sf.Name
		mt := parseMsgpackTag(sf.Tag.Get("msgpack"))
		st := sf.Tag.Get("session")
		itag, hasInject := sf.Tag.Lookup("inject")
		f := Field{Name: name, Index: idx, Type: sf.Type}
		switch {
		case hasInject:
			f.Kind, f.Inject = Dependency, true
			if !sf.IsExported() {
				*errs = append(*errs, &TypeError{Type: root, Path: name, FieldType: sf.Type, Problem: "an `inject`-tagged field must be exported so that it can be set",
					Fix: "export the field, or take the dependency as a constructor parameter and keep it in an unexported field"})
			}
			if st != "" {
				*errs = append(*errs, &TypeError{Type: root, Path: name, Problem: "a field cannot be both `inject` and `session` tagged", Fix: "drop the `session` tag"})
			}
			for opt := range strings.SplitSeq(itag, ",") {
				switch {
				case opt == "":
				case opt == "optional":
					f.InjectOptional = true
				case strings.HasPrefix(opt, "name="):
					f.InjectName = strings.TrimPrefix(opt, "name=")
				default:
					*errs = append(*errs, &TypeError{Type: root, Path: name, Problem: fmt.Sprintf("unknown `inject` option %q", opt),
						Fix: "use `inject:\"\"`, `inject:\"name=NAME\"` and/or `inject:\"optional\"`"})
				}
			}
		case st == "-" || mt.name == "-":
			f.Kind = Transient
		case inlines(sf, mt) && st == "":
			out = append(out, classify(root, sf.Type, idx, name+".", deps, errs)...)
			continue
		case !sf.IsExported():
			f.Kind = Unexported
		case deps[sf.Type]:
			f.Kind = Dependency
		default:
			f.Kind = State
			f.omitEmpty = mt.has("omitempty")
			f.Key = mt.name
			if f.Key == "" {
				f.Key = sf.Name
			}
			switch st {
			case "":
			case "autostart":
				f.Autostart = true
			default:
				*errs = append(*errs, &TypeError{Type: root, Path: name, Problem: fmt.Sprintf("unknown `session` tag %q", st),
					Fix: "use `session:\"-\"` (transient) or `session:\"autostart\"`"})
			}
		}
		if st == "autostart" && f.Kind != State {
			*errs = append(*errs, &TypeError{Type: root, Path: name, Problem: "`session:\"autostart\"` on a field that is not stored",
				Fix: "autostart fields must be exported state"})
		}
		out = append(out, f)
	}
	return out
}

// Encode returns the stored form of obj (a value of the plan's type): a msgpack
// map of the state fields. Entities are written as references while unchanged
// against tr (see [Tracker]); entities tr knows nothing about are compared with
// their repository's current version, fetched in one batch per type. tr may be nil
// when the plan has no entities (or to store every entity whole).
func (p *Plan) Encode(ctx context.Context, obj any, tr *Tracker) ([]byte, error) {
	out, err := p.Append(ctx, make([]byte, 0, p.sizeHint()), obj, tr)
	if err != nil {
		return nil, err
	}
	p.noteSize(len(out))
	return out, nil
}

// EncodeChanged is Encode for comparing obj with its stored form: it encodes
// into a reused buffer and allocates only when the encoding differs from
// baseline. It returns baseline itself and changed false when they are equal,
// and a fresh encoding and changed true otherwise (always when baseline is nil).
func (p *Plan) EncodeChanged(ctx context.Context, obj any, tr *Tracker, baseline []byte) (enc []byte, changed bool, err error) {
	s := p.reg.getEnc(tr, modeDecide)
	defer p.reg.putEnc(s)
	out, err := p.appendWith(ctx, s, s.buf[:0], obj, tr)
	if err != nil {
		return nil, false, err
	}
	p.noteSize(len(out))
	if cap(out) <= 64<<10 {
		s.buf = out[:0] // the state's scratch buffer for the next comparison
	}
	if baseline != nil && bytes.Equal(out, baseline) {
		return baseline, false, nil
	}
	return bytes.Clone(out), true, nil
}

// sizeHint is the capacity for the next encoding: the last one's length with
// some room, so that the encoder's buffer does not grow in steps.
func (p *Plan) sizeHint() int {
	n := int(p.size.Load())
	return n + n/8 + 64
}

func (p *Plan) noteSize(n int) {
	if int64(n) != p.size.Load() {
		p.size.Store(int64(n))
	}
}

// Append is Encode appending to dst.
func (p *Plan) Append(ctx context.Context, dst []byte, obj any, tr *Tracker) ([]byte, error) {
	s := p.reg.getEnc(tr, modeDecide)
	defer p.reg.putEnc(s)
	return p.appendWith(ctx, s, dst, obj, tr)
}

func (p *Plan) appendWith(ctx context.Context, s *encState, dst []byte, obj any, tr *Tracker) ([]byte, error) {
	ptr, err := p.pointer(obj)
	if err != nil {
		return dst, err
	}
	b := dst
	start := len(dst)
	for round := 0; ; round++ {
		b = b[:start]
		s.unknown = s.unknown[:0]
		if b, err = p.root.enc(s, b, ptr); err != nil {
			return dst, err
		}
		if len(s.unknown) == 0 || tr == nil || round == 3 {
			break
		}
		// Entities of unknown state: compare them with their repository's version.
		if err := p.reg.learn(ctx, tr, s.unknown); err != nil {
			p.reg.logger.WarnContext(ctx, "fxsession: could not compare entities with their repository; storing them whole",
				"type", p.t.String(), "error", err)
			break
		}
	}
	return b, nil
}

// Decode decodes stored state into obj, a value of the plan's type usually fresh
// from its constructor: state fields present in data replace the field's value,
// fields missing from data keep theirs, keys of fields that no longer exist are
// ignored, dependencies and transient fields are never touched. Entity references
// are fetched through their repositories (one batch per type where the repository
// has FindMany); a reference whose entity is gone loads as absent (nil, or dropped
// from its slice or map) with a warning. Load snapshots go to tr (may be nil when
// the plan has no entities).
//
// Data that does not fit the type fails with an error matching [ErrIncompatible];
// obj may then be partly written and should be discarded. A repository failure is
// returned as it is. Decode does not keep data: strings are copied out of it.
func (p *Plan) Decode(ctx context.Context, data []byte, obj any, tr *Tracker) error {
	ptr, err := p.pointer(obj)
	if err != nil {
		return err
	}
	s := p.reg.getDec(data, tr)
	defer p.reg.putDec(s)
	if err := s.decodeRoot(p.root, ptr); err != nil {
		if errors.Is(err, ErrIncompatible) {
			return err
		}
		return incompatible(p.t, "%v", err)
	}
	return s.resolve(ctx)
}

// Fingerprint returns a hash of the autostart fields of obj (0 when the plan has
// none). A change of fingerprint during a request means an autostart field changed.
func (p *Plan) Fingerprint(obj any) (uint64, error) {
	if p.auto == nil {
		return 0, nil
	}
	ptr, err := p.pointer(obj)
	if err != nil {
		return 0, err
	}
	s := p.reg.getEnc(nil, modeWhole)
	defer p.reg.putEnc(s)
	b, err := p.auto.enc(s, s.scratch[:0], ptr)
	if err != nil {
		return 0, err
	}
	h := s.hash(b)
	s.scratch = b[:0]
	return h, nil
}

// pointer returns the address of the struct obj (a value of the plan's type)
// points to.
func (p *Plan) pointer(obj any) (unsafe.Pointer, error) {
	if t := reflect.TypeOf(obj); t != p.t {
		return nil, fmt.Errorf("inject: plan of %s used with a %T", p.t, obj)
	}
	ptr := (*[2]unsafe.Pointer)(unsafe.Pointer(&obj))[1] // a pointer is held in the interface's data word
	if ptr == nil {
		return nil, fmt.Errorf("inject: nil %s", p.t)
	}
	return ptr, nil
}
