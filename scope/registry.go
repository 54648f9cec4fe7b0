package scope

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fxsession/fxsession/inject"
	"github.com/fxsession/fxsession/internal/plain"
)

// registry is an app's set of session-scoped types, built when the fx app is
// constructed (after every registration's parameters were resolved) and read-only
// afterwards. Handles find it through their registrations.
type registry struct {
	byType   map[reflect.Type]*entry
	entries  []*entry // session-scoped, idx into a request's session slots
	requests []*entry // request-scoped, idx into a request's scope
	logger   *slog.Logger
	updates  keyedLocks
}

// entry is one scoped type: its plan (session-scoped) and how to construct it.
type entry struct {
	idx     int
	request bool // request-scoped (no plan, never stored)
	t       reflect.Type
	key     string
	name    string // the constructor, for messages
	fn      reflect.Value
	hasErr  bool
	plan    *inject.Plan
	args    []reflect.Value // singleton arguments; session-scoped positions are zero
	scoped  []scopedArg
	injects []injectSet
	auto    []int // index path of an embedded Autostart
	retries int
	deps    []*entry
	ctxArgs []int // positions of context.Context parameters (request-scoped: the request's context)
	// warnedUnstored: the development-mode warning about changes no session
	// holds was logged for this type.
	warnedUnstored atomic.Bool
	// The prototype loads copy instead of calling the constructor (see
	// restore), decided at the first load; constructOnLoad (scope option)
	// keeps calling it.
	constructOnLoad bool
	proto           atomic.Pointer[reflect.Value]
	protoOnce       sync.Once
}

type scopedArg struct {
	arg  int
	path []int // field path inside an fx.In parameter; nil for a plain parameter
	dep  *entry
}

type injectSet struct {
	index []int
	value reflect.Value // a singleton
	dep   *entry        // or a session-scoped type
}

var (
	autostartType = reflect.TypeFor[Autostart]()
	contextType   = reflect.TypeFor[context.Context]()
)

// types lists the session-scoped types.
func (r *registry) types() []reflect.Type {
	out := make([]reflect.Type, len(r.entries))
	for i, e := range r.entries {
		out[i] = e.t
	}
	return out
}

// typeKey derives the storage key of t from its package path and name: a readable
// prefix (the type name, ASCII only) and 72 bits of a SHA-256, within the cache
// key alphabet.
func typeKey(t reflect.Type) string {
	base := t
	for base.Kind() == reflect.Pointer {
		base = base.Elem()
	}
	sum := sha256.Sum256([]byte(base.PkgPath() + "." + base.Name()))
	var name strings.Builder
	for _, c := range base.Name() {
		if name.Len() >= 40 {
			break
		}
		if c < 128 && (c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			name.WriteRune(c)
		}
	}
	return keyPrefix + name.String() + "." + base64.RawURLEncoding.EncodeToString(sum[:9])
}

// depGraph is what the registry reads from fx's DOT graph: which constructors
// consume which values, and which values are provided.
type depGraph struct {
	provided  map[string]bool
	consumers map[string][]string // value -> constructor names
}

// parseGraph reads dig's DOT output (dig.Visualize, v1.19): clusters with a
// package label, a constructor node with the function's name, result nodes, and
// "constructor_N -> value" edges for parameters. Lines it does not recognise are
// ignored (the captive-dependency check is then simply less precise).
func parseGraph(dot string) depGraph {
	g := depGraph{provided: map[string]bool{}, consumers: map[string][]string{}}
	pkg := map[string]string{}
	names := map[string]string{}
	var edges [][2]string
	cluster := ""
	sc := bufio.NewScanner(strings.NewReader(dot))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "subgraph cluster_"):
			cluster = strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "subgraph cluster_")), "{")
			cluster = strings.TrimSpace(cluster)
		case line == "}":
			cluster = ""
		case cluster != "" && strings.HasPrefix(line, "label = "):
			if s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "label = "), ";")); err == nil {
				pkg[cluster] = s
			}
		case cluster != "" && strings.HasPrefix(line, "constructor_") && strings.Contains(line, "label="):
			if i := strings.Index(line, "label="); i >= 0 {
				rest := strings.TrimSuffix(line[i+len("label="):], "];")
				if s, err := strconv.Unquote(rest); err == nil {
					names[cluster] = s
				}
			}
		case cluster != "" && strings.HasPrefix(line, `"`):
			if s, err := strconv.QuotedPrefix(line); err == nil {
				if v, err := strconv.Unquote(s); err == nil {
					g.provided[v] = true
				}
			}
		case cluster == "" && strings.HasPrefix(line, "constructor_") && strings.Contains(line, " -> "):
			from, to, _ := strings.Cut(line, " -> ")
			id := strings.TrimPrefix(from, "constructor_")
			if s, err := strconv.QuotedPrefix(to); err == nil {
				if v, err := strconv.Unquote(s); err == nil {
					edges = append(edges, [2]string{id, v})
				}
			}
		}
	}
	for _, e := range edges {
		name := names[e[0]]
		if p := pkg[e[0]]; p != "" {
			name = p + "." + name
		}
		g.consumers[e[1]] = append(g.consumers[e[1]], name)
	}
	return g
}

// build makes the app's registry from its registrations, once every
// registration's parameters are resolved (the last registration's startup
// invoke calls it). It runs in phases, each collecting its errors, so that fx
// start reports every problem at once:
//
//  1. sortRegistrations: a deterministic order (dig shuffles value groups).
//  2. registerImplementationsAndRepositories: what plans need beyond the types.
//  3. indexProviders: one entry per session-scoped type, each with its storage key.
//  4. checkCaptives: no singleton constructor takes a session-scoped type.
//  5. buildEntries: per type, its plan (buildPlan) and how its constructor and
//     `inject` fields are filled (resolveParameters).
//  6. checkCycles: session-scoped types do not depend on each other in a circle.
//
// The registry is then shared by every registration (and so by every Handle).
func build(regs []*Registration) error {
	for _, r := range regs {
		if r.registry != nil {
			return nil
		}
	}
	b := newBuilder(regs)
	b.registerImplementationsAndRepositories()
	b.indexProviders()
	b.checkCaptives()
	b.buildEntries()
	b.checkCycles()
	if len(b.errs) > 0 {
		return errors.Join(b.errs...)
	}
	for _, r := range regs {
		r.registry = b.reg
	}
	return nil
}

// builder is the state of one build.
type builder struct {
	regs      []*Registration // sorted
	logger    *slog.Logger
	inject    *inject.Registry
	reg       *registry
	providers []*Registration // session- and request-scoped
	graph     depGraph
	errs      []error
}

func newBuilder(regs []*Registration) *builder {
	logger := slog.Default()
	for _, r := range regs {
		if r.logger != nil {
			logger = r.logger
			break
		}
	}
	regs = sortRegistrations(regs)
	return &builder{
		regs:   regs,
		logger: logger,
		inject: inject.NewRegistry(inject.WithLogger(logger), inject.WithHints(inject.Hints{
			Repository:      "register a repository for %s with scope.Entities(<repository constructor>) (Find(ctx, id string) (E, error))",
			Implementations: "register its implementations with scope.Implementations[%s](...)",
		})),
		reg:   &registry{byType: map[reflect.Type]*entry{}, logger: logger},
		graph: parseGraph(regs[0].graph),
	}
}

func (b *builder) fail(err error) { b.errs = append(b.errs, err) }

// sortRegistrations returns the registrations in a deterministic order:
// implementations, entities and providers each by their type, so that errors
// and type indexes do not depend on dig's shuffling of value groups.
func sortRegistrations(regs []*Registration) []*Registration {
	regs = slices.Clone(regs)
	slices.SortStableFunc(regs, func(a, b *Registration) int {
		if c := cmp.Compare(a.desc.kind, b.desc.kind); c != 0 {
			return c
		}
		return cmp.Compare(a.desc.sortKey(), b.desc.sortKey())
	})
	return regs
}

// registerImplementationsAndRepositories gives the inject registry the
// implementations of interfaces (scope.Implementations) and the entity
// repositories (scope.Entities, scope.Repository), and collects the providers.
func (b *builder) registerImplementationsAndRepositories() {
	for _, r := range b.regs {
		d := r.desc
		switch d.kind {
		case kindImplementations:
			if err := b.inject.AddImplementations(d.iface, d.impls...); err != nil {
				b.fail(fmt.Errorf("scope.%s: %w", d.name, err))
			}
		case kindEntities:
			repo := d.repo
			if repo == nil {
				v := r.values[0]
				if v.IsZero() {
					b.fail(fmt.Errorf("scope.%s: %s is not provided to the app (or is nil)", d.entitiesCall(), d.leaves[0].t))
					continue
				}
				repo = v.Interface()
			}
			if _, err := b.inject.AddRepository(repo); err != nil {
				b.fail(fmt.Errorf("scope.%s: %w", d.entitiesCall(), err))
			}
		case kindProvider, kindRequest:
			b.providers = append(b.providers, r)
		}
	}
}

// indexProviders makes an entry per session-scoped type, refusing a type
// registered twice and two types stored under one key.
func (b *builder) indexProviders() {
	keys := map[string]*entry{}
	for _, r := range b.providers {
		d := r.desc
		t := d.ctor.result
		if old := b.reg.byType[t]; old != nil {
			b.fail(fmt.Errorf("scope: %s is registered twice, by scope.%s(%s) and scope.%s(%s); keep one", t, old.call(), old.name, d.call(), d.name))
			continue
		}
		if d.kind == kindRequest {
			e := &entry{idx: len(b.reg.requests), request: true, t: t, name: d.name, fn: d.ctor.fn, hasErr: d.ctor.hasErr}
			b.reg.byType[t] = e
			b.reg.requests = append(b.reg.requests, e)
			continue
		}
		e := &entry{idx: len(b.reg.entries), t: t, name: d.name, fn: d.ctor.fn, hasErr: d.ctor.hasErr, retries: d.opts.retries, key: d.opts.key,
			constructOnLoad: d.opts.constructOnLoad}
		if e.retries == 0 {
			e.retries = DefaultRetries
		}
		if e.key == "" {
			e.key = typeKey(t)
		}
		if old := keys[e.key]; old != nil {
			b.fail(fmt.Errorf("scope: %s and %s are both stored under %q; give one another scope.Key", old.t, t, e.key))
			continue
		}
		keys[e.key] = e
		b.reg.byType[t] = e
		b.reg.entries = append(b.reg.entries, e)
	}
}

// checkCaptives refuses singleton constructors (in fx's graph) that take a
// session-scoped type directly: one visitor's instance would serve everyone.
func (b *builder) checkCaptives() {
	for _, e := range slices.Concat(b.reg.entries, b.reg.requests) {
		name := e.t.String()
		if b.graph.provided[name] {
			continue // another type prints the same: cannot tell them apart
		}
		for _, c := range b.graph.consumers[name] {
			if e.request {
				b.fail(fmt.Errorf("scope: captive dependency: the singleton constructor %s takes the request-scoped %s directly, "+
					"so one request's instance would serve every request, after its request closed it; take a scope.RequestHandle[%s] instead and call its Get(ctx) in each request", c, e.t, e.t))
				continue
			}
			b.fail(fmt.Errorf("scope: captive dependency: the singleton constructor %s takes the session-scoped %s directly, "+
				"so one visitor's instance would serve every request; take a scope.Handle[%s] instead and call its Get(ctx) in each request", c, e.t, e.t))
		}
	}
}

// call is the registering function of e, for messages.
func (e *entry) call() string {
	if e.request {
		return "ProvideRequest"
	}
	return "Provide"
}

// call is the registering function of d, for messages.
func (d *descriptor) call() string {
	if d.kind == kindRequest {
		return "ProvideRequest"
	}
	return "Provide"
}

// buildEntries completes the entry of every provider: its plan, its
// constructor's arguments and its `inject` fields.
func (b *builder) buildEntries() {
	for _, r := range b.providers {
		e := b.reg.byType[r.desc.ctor.result]
		if e == nil || e.name != r.desc.name {
			continue // refused by indexProviders
		}
		if e.request {
			b.resolveParameters(r, e)
			continue
		}
		b.buildPlan(r, e)
		b.resolveParameters(r, e)
		e.auto = findAutostart(e.t.Elem(), nil)
	}
}

// buildPlan builds the storage plan of e's type: what the constructor and the
// container give (its parameters, its `inject` fields, the session-scoped
// types) is a dependency, never state.
func (b *builder) buildPlan(r *Registration, e *entry) {
	d := r.desc
	deps := []reflect.Type{}
	for _, p := range d.ctor.params {
		deps = append(deps, p.t)
	}
	for _, l := range d.leaves {
		deps = append(deps, l.t)
	}
	deps = append(deps, b.reg.types()...)
	plan, err := b.inject.Plan(e.t, inject.Dependencies(deps...))
	if err != nil {
		b.fail(fmt.Errorf("scope.Provide(%s): %w", d.name, err))
		return
	}
	e.plan = plan
}

// resolveParameters decides, for each constructor parameter and `inject`
// field of e, where its value comes from: a singleton resolved now, or the
// request's instance of a session-scoped type (recorded as a dependency of e
// for checkCycles). A parameter nothing provides is an error.
func (b *builder) resolveParameters(r *Registration, e *entry) {
	b.resolveArguments(r, e)
	b.resolveInjectFields(r, e)
	for _, s := range e.scoped {
		e.deps = append(e.deps, s.dep)
	}
	for _, s := range e.injects {
		if s.dep != nil {
			e.deps = append(e.deps, s.dep)
		}
	}
	if !e.request {
		for _, d := range e.deps {
			if d.request {
				b.fail(fmt.Errorf("scope: captive dependency: the session-scoped %s takes the request-scoped %s, "+
					"so it would keep one request's instance (closed when that request ended) for the whole session; "+
					"take a scope.RequestHandle[%s] field (tagged `inject:\"\"`) instead and call its Get(ctx) in each request", e.t, d.t, d.t))
			}
		}
	}
}

// resolveArguments fills e.args with the singleton arguments of e's
// constructor and e.scoped with the positions of session-scoped ones (plain
// parameters, or fields of fx.In parameter structs).
func (b *builder) resolveArguments(r *Registration, e *entry) {
	d := r.desc
	e.args = make([]reflect.Value, len(d.ctor.params))
	for i, p := range d.ctor.params {
		if p.obj == nil {
			l := d.leaves[p.leaf]
			e.args[i] = r.values[p.leaf]
			if l.t == contextType && l.name == "" && e.request {
				// The request's context, given by Get.
				e.ctxArgs = append(e.ctxArgs, i)
				continue
			}
			if dep := b.scopedOf(l); dep != nil {
				e.scoped = append(e.scoped, scopedArg{arg: i, dep: dep})
			} else {
				b.missing(d, l, r.values[p.leaf])
			}
			continue
		}
		e.args[i] = p.obj.build(r.values)
		p.obj.leafPaths(nil, func(li int, path []int) {
			l := d.leaves[li]
			if dep := b.scopedOf(l); dep != nil {
				e.scoped = append(e.scoped, scopedArg{arg: i, path: path, dep: dep})
			} else {
				b.missing(d, l, r.values[li])
			}
		})
	}
}

// resolveInjectFields fills e.injects with what e's `inject` fields receive
// when the constructor leaves them zero: a singleton (or an fx.In struct of
// singletons, such as a Handle) or the request's instance of a session-scoped
// type.
func (b *builder) resolveInjectFields(r *Registration, e *entry) {
	d := r.desc
	for _, f := range d.injects {
		if f.obj != nil {
			f.obj.leafPaths(nil, func(li int, _ []int) {
				l := d.leaves[li]
				if b.scopedOf(l) != nil {
					b.fail(fmt.Errorf("scope.Provide(%s): field %s: a session-scoped type inside an fx.In field is not supported; tag a %s field `inject:\"\"` directly", d.name, f.name, l.t))
				} else {
					b.missing(d, l, r.values[li])
				}
			})
			e.injects = append(e.injects, injectSet{index: f.index, value: f.obj.build(r.values)})
			continue
		}
		l := d.leaves[f.leaf]
		if dep := b.scopedOf(l); dep != nil {
			e.injects = append(e.injects, injectSet{index: f.index, dep: dep})
			continue
		}
		b.missing(d, l, r.values[f.leaf])
		if v := r.values[f.leaf]; !v.IsZero() {
			e.injects = append(e.injects, injectSet{index: f.index, value: v})
		}
	}
}

// scopedOf returns the entry of the session-scoped type l asks for, nil when
// l is a singleton (or named, or a group: session-scoped types have neither).
func (b *builder) scopedOf(l leaf) *entry {
	if l.name != "" || l.group != "" {
		return nil
	}
	return b.reg.byType[l.t]
}

// missing reports a parameter l of d that fx resolved to nothing although it
// is neither optional nor a group nor provided.
func (b *builder) missing(d *descriptor, l leaf, v reflect.Value) {
	if !v.IsZero() || l.optional || l.group != "" || b.graph.provided[l.key()] {
		return
	}
	if t, ok := isMarker(l.t); ok {
		b.fail(fmt.Errorf("scope.%s(%s): it takes a scope.Handle[%s], but %s is not session-scoped: register it with scope.Provide(<constructor returning %s>)", d.call(), d.name, t, t, t))
		return
	}
	b.fail(fmt.Errorf("scope.%s(%s): %s is not provided to the app: add fx.Provide(<its constructor>) or fx.Supply(<a value>), or mark it optional", d.call(), d.name, l.what))
}

// checkCycles refuses session-scoped types that depend on each other in a
// circle (through constructor parameters or `inject` fields).
func (b *builder) checkCycles() {
	if err := cycles(b.reg.entries); err != nil {
		b.fail(err)
	}
	if err := cycles(b.reg.requests); err != nil {
		b.fail(err)
	}
}

func (d *descriptor) entitiesCall() string {
	if strings.HasPrefix(d.name, "Repository[") {
		return d.name + "()"
	}
	return "Entities(" + d.name + ")"
}

func (d *descriptor) sortKey() string {
	switch d.kind {
	case kindProvider, kindRequest:
		return d.ctor.result.String() + " " + d.name
	case kindImplementations:
		return d.iface.String()
	}
	return d.name
}

// findAutostart returns the index path of an embedded Autostart, nil if none.
func findAutostart(t reflect.Type, prefix []int) []int {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.Anonymous {
			continue
		}
		p := append(slices.Clone(prefix), i)
		if f.Type == autostartType {
			return p
		}
		if f.Type.Kind() == reflect.Struct {
			if found := findAutostart(f.Type, p); found != nil {
				return found
			}
		}
	}
	return nil
}

// cycles reports session-scoped types that depend on each other in a circle.
func cycles(entries []*entry) error {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(entries))
	var stack []*entry
	var visit func(e *entry) error
	visit = func(e *entry) error {
		color[e.idx] = grey
		stack = append(stack, e)
		for _, d := range e.deps {
			if d.request != e.request {
				continue // another lifetime: checked on its own list
			}
			switch color[d.idx] {
			case grey:
				var names []string
				start := slices.Index(stack, d)
				for _, s := range stack[start:] {
					names = append(names, s.t.String())
				}
				names = append(names, d.t.String())
				what, handle := "session-scoped", "Handle"
				if e.request {
					what, handle = "request-scoped", "RequestHandle"
				}
				return fmt.Errorf("scope: %s types depend on each other in a cycle: %s; break it with a scope.%s field resolved on use", what, strings.Join(names, " -> "), handle)
			case white:
				if err := visit(d); err != nil {
					return err
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[e.idx] = black
		return nil
	}
	for _, e := range entries {
		if color[e.idx] == white {
			if err := visit(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- loading without the constructor ----

// restore returns the instance that stored state is decoded into. The first
// load of a type in the process calls its constructor; when what the
// constructor made is all restored by a load anyway — state (decoded over it),
// dependencies (the app's singletons, the same for every instance) and plain
// values (copied) — a copy of it (the prototype) becomes the starting point of
// later loads instead of a constructor call. See offerPrototype for the rule.
func (st *reqState) restore(ctx context.Context, e *entry) (*instance, error) {
	if p := e.proto.Load(); p != nil {
		v := reflect.New(e.t.Elem())
		v.Elem().Set(*p)
		return newInstance(e, v), nil
	}
	v, err := callConstructor(ctx, e, st)
	if err != nil {
		return nil, err
	}
	e.protoOnce.Do(func() { e.offerPrototype(v) })
	return newInstance(e, v), nil
}

// offerPrototype keeps a copy of v, an object fresh from e's constructor, as
// the prototype of loads, when copying it is the same as calling the
// constructor again:
//
//   - e takes no session-scoped type (those differ per request) and was not
//     registered with ConstructOnLoad;
//   - every field the constructor set (non-zero) is a plain value (no pointer,
//     slice, map, channel, func or interface inside: a copy owns it), or, for a
//     field that is not state, holds only what the container gave (a
//     constructor argument or an `inject` value, or what they point to: the
//     same singletons for every instance).
//
// Otherwise (a map, a buffer, a pointer to a value of its own) the instance
// must own what the constructor made, and every load calls the constructor.
func (e *entry) offerPrototype(v reflect.Value) {
	if e.constructOnLoad || len(e.scoped) > 0 || slices.ContainsFunc(e.injects, func(in injectSet) bool { return in.dep != nil }) {
		return
	}
	given := map[uintptr]bool{}
	for _, a := range e.args {
		collectRefs(a, given, 0)
	}
	for _, in := range e.injects {
		collectRefs(in.value, given, 0)
	}
	elem := v.Elem()
	for _, f := range e.plan.Fields() {
		fv := elem.FieldByIndex(f.Index)
		if fv.IsZero() || plain.Type(f.Type) {
			continue
		}
		if f.Kind != inject.State && onlyGiven(fv, given, 0) {
			continue
		}
		return
	}
	p := reflect.New(e.t.Elem()).Elem()
	p.Set(elem)
	e.proto.Store(&p)
}

// collectRefs adds to set the references v holds: pointers, maps, slices,
// channels and funcs, also inside interfaces and structs.
func collectRefs(v reflect.Value, set map[uintptr]bool, depth int) {
	if !v.IsValid() || depth > 8 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		if !v.IsNil() {
			set[v.Pointer()] = true
		}
	case reflect.Interface:
		if !v.IsNil() {
			collectRefs(v.Elem(), set, depth+1)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			collectRefs(v.Field(i), set, depth+1)
		}
	}
}

// onlyGiven reports whether every reference v holds is in set (or nil), and
// everything else in it is plain.
func onlyGiven(v reflect.Value, set map[uintptr]bool, depth int) bool {
	if depth > 8 {
		return false
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return v.IsNil() || set[v.Pointer()]
	case reflect.Interface:
		return v.IsNil() || onlyGiven(v.Elem(), set, depth+1)
	case reflect.Struct:
		for i := range v.NumField() {
			if !onlyGiven(v.Field(i), set, depth+1) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := range v.Len() {
			if !onlyGiven(v.Index(i), set, depth+1) {
				return false
			}
		}
		return true
	}
	return plain.Type(v.Type())
}
