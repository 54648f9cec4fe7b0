package scope

import (
	"bufio"
	"cmp"
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
)

// registry is an app's set of session-scoped types, built when the fx app is
// constructed (after every registration's parameters were resolved) and read-only
// afterwards. Handles find it through their registrations.
type registry struct {
	byType  map[reflect.Type]*entry
	entries []*entry
	logger  *slog.Logger
	mu      sync.Mutex // creation of per-request states
	updates keyedLocks
}

// entry is one session-scoped type: its plan and how to construct it.
type entry struct {
	idx     int
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
	// warnedUnstored: the development-mode warning about changes no session
	// holds was logged for this type.
	warnedUnstored atomic.Bool
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

var autostartType = reflect.TypeFor[Autostart]()

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

func build(regs []*Registration) error {
	for _, r := range regs {
		if r.registry != nil {
			return nil
		}
	}
	logger := slog.Default()
	for _, r := range regs {
		if r.logger != nil {
			logger = r.logger
			break
		}
	}
	// dig shuffles value groups: sort for deterministic errors and indexes.
	regs = slices.Clone(regs)
	slices.SortStableFunc(regs, func(a, b *Registration) int {
		if c := cmp.Compare(a.desc.kind, b.desc.kind); c != 0 {
			return c
		}
		return cmp.Compare(a.desc.sortKey(), b.desc.sortKey())
	})
	var errs []error
	ir := inject.NewRegistry(inject.WithLogger(logger), inject.WithHints(inject.Hints{
		Repository:      "register a repository for %s with scope.Entities(<repository constructor>) (Find(ctx, id string) (E, error))",
		Implementations: "register its implementations with scope.Implementations[%s](...)",
	}))
	var providers []*Registration
	for _, r := range regs {
		d := r.desc
		switch d.kind {
		case kindImplementations:
			if err := ir.AddImplementations(d.iface, d.impls...); err != nil {
				errs = append(errs, fmt.Errorf("scope.%s: %w", d.name, err))
			}
		case kindEntities:
			repo := d.repo
			if repo == nil {
				if v := r.values[0]; !v.IsZero() {
					repo = v.Interface()
				} else {
					errs = append(errs, fmt.Errorf("scope.%s: %s is not provided to the app (or is nil)", d.entitiesCall(), d.leaves[0].t))
					continue
				}
			}
			if _, err := ir.AddRepository(repo); err != nil {
				errs = append(errs, fmt.Errorf("scope.%s: %w", d.entitiesCall(), err))
			}
		case kindProvider:
			providers = append(providers, r)
		}
	}

	reg := &registry{byType: map[reflect.Type]*entry{}, logger: logger}
	keys := map[string]*entry{}
	for _, r := range providers {
		d := r.desc
		t := d.ctor.result
		if old := reg.byType[t]; old != nil {
			errs = append(errs, fmt.Errorf("scope: %s is registered twice, by scope.Provide(%s) and scope.Provide(%s); keep one", t, old.name, d.name))
			continue
		}
		e := &entry{idx: len(reg.entries), t: t, name: d.name, fn: d.ctor.fn, hasErr: d.ctor.hasErr, retries: d.opts.retries}
		if e.retries == 0 {
			e.retries = DefaultRetries
		}
		e.key = d.opts.key
		if e.key == "" {
			e.key = typeKey(t)
		}
		if old := keys[e.key]; old != nil {
			errs = append(errs, fmt.Errorf("scope: %s and %s are both stored under %q; give one another scope.Key", old.t, t, e.key))
			continue
		}
		keys[e.key] = e
		reg.byType[t] = e
		reg.entries = append(reg.entries, e)
	}

	graph := parseGraph(regs[0].graph)
	for _, e := range reg.entries {
		for _, c := range graph.consumers[e.t.String()] {
			if graph.provided[e.t.String()] {
				break // another type prints the same: cannot tell them apart
			}
			errs = append(errs, fmt.Errorf("scope: captive dependency: the singleton constructor %s takes the session-scoped %s directly, "+
				"so one visitor's instance would serve every request; take a scope.Handle[%s] instead and call its Get(ctx) in each request", c, e.t, e.t))
		}
	}

	scopedOf := func(l leaf) *entry {
		if l.name != "" || l.group != "" {
			return nil
		}
		return reg.byType[l.t]
	}
	missing := func(d *descriptor, l leaf, v reflect.Value) error {
		if !v.IsZero() || l.optional || l.group != "" || graph.provided[l.key()] {
			return nil
		}
		if t, ok := isMarker(l.t); ok {
			return fmt.Errorf("scope.Provide(%s): it takes a scope.Handle[%s], but %s is not session-scoped: register it with scope.Provide(<constructor returning %s>)", d.name, t, t, t)
		}
		return fmt.Errorf("scope.Provide(%s): %s is not provided to the app: add fx.Provide(<its constructor>) or fx.Supply(<a value>), or mark it optional", d.name, l.what)
	}
	for _, r := range providers {
		d := r.desc
		e := reg.byType[d.ctor.result]
		if e == nil || e.name != d.name {
			continue
		}
		deps := []reflect.Type{}
		for _, p := range d.ctor.params {
			deps = append(deps, p.t)
		}
		for _, l := range d.leaves {
			deps = append(deps, l.t)
		}
		deps = append(deps, reg.types()...)
		plan, err := ir.Plan(e.t, inject.Dependencies(deps...))
		if err != nil {
			errs = append(errs, fmt.Errorf("scope.Provide(%s): %w", d.name, err))
		} else {
			e.plan = plan
		}
		e.args = make([]reflect.Value, len(d.ctor.params))
		for i, p := range d.ctor.params {
			if p.obj == nil {
				l := d.leaves[p.leaf]
				e.args[i] = r.values[p.leaf]
				if dep := scopedOf(l); dep != nil {
					e.scoped = append(e.scoped, scopedArg{arg: i, dep: dep})
				} else if err := missing(d, l, r.values[p.leaf]); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			e.args[i] = p.obj.build(r.values)
			p.obj.leafPaths(nil, func(li int, path []int) {
				l := d.leaves[li]
				if dep := scopedOf(l); dep != nil {
					e.scoped = append(e.scoped, scopedArg{arg: i, path: path, dep: dep})
				} else if err := missing(d, l, r.values[li]); err != nil {
					errs = append(errs, err)
				}
			})
		}
		for _, f := range d.injects {
			if f.obj != nil {
				f.obj.leafPaths(nil, func(li int, _ []int) {
					l := d.leaves[li]
					if scopedOf(l) != nil {
						errs = append(errs, fmt.Errorf("scope.Provide(%s): field %s: a session-scoped type inside an fx.In field is not supported; tag a %s field `inject:\"\"` directly", d.name, f.name, l.t))
					} else if err := missing(d, l, r.values[li]); err != nil {
						errs = append(errs, err)
					}
				})
				e.injects = append(e.injects, injectSet{index: f.index, value: f.obj.build(r.values)})
				continue
			}
			l := d.leaves[f.leaf]
			if dep := scopedOf(l); dep != nil {
				e.injects = append(e.injects, injectSet{index: f.index, dep: dep})
				continue
			}
			if err := missing(d, l, r.values[f.leaf]); err != nil {
				errs = append(errs, err)
			}
			if v := r.values[f.leaf]; !v.IsZero() {
				e.injects = append(e.injects, injectSet{index: f.index, value: v})
			}
		}
		for _, s := range e.scoped {
			e.deps = append(e.deps, s.dep)
		}
		for _, s := range e.injects {
			if s.dep != nil {
				e.deps = append(e.deps, s.dep)
			}
		}
		e.auto = findAutostart(e.t.Elem(), nil)
	}
	if err := cycles(reg.entries); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, r := range regs {
		r.registry = reg
	}
	return nil
}

func (d *descriptor) entitiesCall() string {
	if strings.HasPrefix(d.name, "Repository[") {
		return d.name + "()"
	}
	return "Entities(" + d.name + ")"
}

func (d *descriptor) sortKey() string {
	switch d.kind {
	case kindProvider:
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
			switch color[d.idx] {
			case grey:
				var names []string
				start := slices.Index(stack, d)
				for _, s := range stack[start:] {
					names = append(names, s.t.String())
				}
				names = append(names, d.t.String())
				return fmt.Errorf("scope: session-scoped types depend on each other in a cycle: %s; break it with a scope.Handle field resolved on use", strings.Join(names, " -> "))
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
