package scope

import (
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"strings"

	"go.uber.org/fx"
)

var (
	inType    = reflect.TypeFor[fx.In]()
	outType   = reflect.TypeFor[fx.Out]()
	errorType = reflect.TypeFor[error]()
)

// leaf is one value the startup invoke asks fx for: a plain constructor
// parameter, a field of an fx.In parameter struct, or an `inject`-tagged field.
type leaf struct {
	t        reflect.Type
	name     string // dig name
	group    string // dig group (the whole tag value, with ",flatten"/",soft")
	optional bool   // optional as the user declared it
	what     string // for messages: "parameter 2", "Params.Catalog", "field Logger"
}

func (l leaf) tag() reflect.StructTag {
	var parts []string
	if l.name != "" {
		parts = append(parts, fmt.Sprintf(`name:%q`, l.name))
	}
	if l.group != "" {
		parts = append(parts, fmt.Sprintf(`group:%q`, l.group))
	} else {
		// Asked optionally so that session-scoped types (which fx does not
		// provide) come back zero instead of failing; truly missing singletons
		// are reported by the registry afterwards.
		parts = append(parts, `optional:"true"`)
	}
	return reflect.StructTag(strings.Join(parts, " "))
}

// key is the node name dig's DOT graph gives the value.
func (l leaf) key() string {
	if l.name != "" {
		return fmt.Sprintf("%v[name=%v]", l.t, l.name)
	}
	return l.t.String()
}

// param is one constructor parameter: a leaf, or an fx.In struct rebuilt from
// leaves.
type param struct {
	t    reflect.Type
	leaf int // index into leaves when obj is nil
	obj  *paramObject
}

type paramObject struct {
	t      reflect.Type
	fields []objField
}

type objField struct {
	index int // field index in the struct
	leaf  int // index into leaves when obj is nil
	obj   *paramObject
}

// ctorInfo is what scope.Provide learns about a constructor before fx runs.
type ctorInfo struct {
	name   string
	fn     reflect.Value
	result reflect.Type
	hasErr bool
	params []param
	leaves []leaf
}

// funcName names a function for messages: "shop.NewBasket".
func funcName(fn any) string {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func {
		return fmt.Sprintf("%T", fn)
	}
	f := runtime.FuncForPC(v.Pointer())
	if f == nil {
		return v.Type().String()
	}
	name := f.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// unwrapAnnotated turns the value fx.Annotate returns into the function fx itself
// would provide (its Build method: parameters become one fx.In struct carrying
// the ParamTags). fx.Annotate returns an unexported struct, so this relies on its
// shape in go.uber.org/fx v1.24 (pinned by TestAnnotatedShape); anything it does
// not recognise is refused with an error pointing to the fx.In alternative.
func unwrapAnnotated(caller string, ctor any) (fn any, name string, ok bool, err error) {
	v := reflect.ValueOf(ctor)
	t := v.Type()
	if t.Kind() != reflect.Struct || t.PkgPath() != "go.uber.org/fx" || t.Name() != "annotated" {
		return nil, "", false, nil
	}
	fail := func(why string) (any, string, bool, error) {
		return nil, name, true, fmt.Errorf("scope.%s(%s): %s; give the constructor an fx.In parameter struct with `name`/`group`/`optional` tags instead", caller, name, why)
	}
	name = "fx.Annotate(...)"
	if tv := v.FieldByName("Target"); tv.IsValid() && tv.CanInterface() {
		name = "fx.Annotate(" + funcName(tv.Interface()) + ")"
	} else {
		return fail("this fx version's fx.Annotate value is not understood")
	}
	for _, f := range []string{"ResultTags", "As", "Hooks"} {
		fv := v.FieldByName(f)
		if !fv.IsValid() || fv.Kind() != reflect.Slice {
			return fail("this fx version's fx.Annotate value is not understood")
		}
		if fv.Len() > 0 {
			switch f {
			case "ResultTags":
				return fail("fx.ResultTags cannot apply: session-scoped types are found by their type alone")
			case "As":
				return fail("fx.As cannot apply: session-scoped types are found by their type alone")
			default:
				return fail("fx.OnStart/fx.OnStop hooks cannot run per session-scoped instance")
			}
		}
	}
	p := reflect.New(t)
	p.Elem().Set(v)
	b, okB := p.Interface().(interface{ Build() (any, error) })
	if !okB {
		return fail("this fx version's fx.Annotate value has no Build method")
	}
	built, err := b.Build()
	if err != nil {
		return nil, name, true, fmt.Errorf("scope.%s(%s): %w", caller, name, err)
	}
	return built, name, true, nil
}

// inspectConstructor checks a constructor and flattens its parameters into leaves.
func inspectConstructor(ctor any, call string) (*ctorInfo, error) {
	if ctor == nil {
		return nil, fmt.Errorf("scope.%s(nil): want a constructor function", call)
	}
	name := funcName(ctor)
	fn, aname, annotated, err := unwrapAnnotated(call, ctor)
	if err != nil {
		return nil, err
	}
	if annotated {
		name = aname
	} else {
		fn = ctor
	}
	v := reflect.ValueOf(fn)
	t := v.Type()
	if t.Kind() != reflect.Func {
		return nil, fmt.Errorf("scope.%s(%s): want a constructor function, got a %s", call, name, t)
	}
	if t.IsVariadic() {
		return nil, fmt.Errorf("scope.%s(%s): variadic constructors are not supported; wrap it in a function with fixed parameters", call, name)
	}
	info := &ctorInfo{name: name, fn: v}
	switch {
	case t.NumOut() == 1:
	case t.NumOut() == 2 && t.Out(1) == errorType:
		info.hasErr = true
	default:
		return nil, fmt.Errorf("scope.%s(%s): the constructor returns %s; a scoped constructor returns a pointer to a struct, optionally with an error", call, name, outs(t))
	}
	info.result = t.Out(0)
	if info.result.Kind() == reflect.Struct && embeds(info.result, outType) {
		return nil, fmt.Errorf("scope.%s(%s): the constructor returns an fx.Out struct; a scoped constructor returns the session-scoped pointer itself (types are found by type alone: no names or groups)", call, name)
	}
	if info.result.Kind() != reflect.Pointer || info.result.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("scope.%s(%s): the constructor returns %s; a scoped constructor returns a pointer to a struct (its state is the struct's fields)", call, name, info.result)
	}
	for i := range t.NumIn() {
		pt := t.In(i)
		if pt.Kind() == reflect.Pointer && pt.Elem().Kind() == reflect.Struct && embeds(pt.Elem(), inType) {
			return nil, fmt.Errorf("scope.%s(%s): parameter %d is a pointer to an fx.In struct; pass the struct by value", call, name, i+1)
		}
		if pt.Kind() == reflect.Struct && embeds(pt, inType) {
			obj, err := info.object(pt, pt.Name())
			if err != nil {
				return nil, fmt.Errorf("scope.%s(%s): %w", call, name, err)
			}
			info.params = append(info.params, param{t: pt, leaf: -1, obj: obj})
			continue
		}
		info.params = append(info.params, param{t: pt, leaf: len(info.leaves)})
		info.leaves = append(info.leaves, leaf{t: pt, what: fmt.Sprintf("parameter %d (%s)", i+1, pt)})
	}
	return info, nil
}

func outs(t reflect.Type) string {
	var s []string
	for i := range t.NumOut() {
		s = append(s, t.Out(i).String())
	}
	return "(" + strings.Join(s, ", ") + ")"
}

func embeds(t, in reflect.Type) bool {
	for i := range t.NumField() {
		if f := t.Field(i); f.Anonymous && f.Type == in {
			return true
		}
	}
	return false
}

// object flattens an fx.In struct with dig's semantics: `name`, `optional` and
// `group` tags, nested fx.In structs, `ignore-unexported` on the embedded fx.In.
func (info *ctorInfo) object(t reflect.Type, path string) (*paramObject, error) {
	obj := &paramObject{t: t}
	ignoreUnexported := false
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type == inType {
			ignoreUnexported = f.Tag.Get("ignore-unexported") == "true"
		}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type == inType {
			continue
		}
		fpath := path + "." + f.Name
		if !f.IsExported() {
			if ignoreUnexported {
				continue
			}
			return nil, fmt.Errorf("%s is unexported: fields of an fx.In struct must be exported (or tag the embedded fx.In `ignore-unexported:\"true\"`)", fpath)
		}
		if f.Type.Kind() == reflect.Struct && embeds(f.Type, inType) {
			sub, err := info.object(f.Type, fpath)
			if err != nil {
				return nil, err
			}
			obj.fields = append(obj.fields, objField{index: i, leaf: -1, obj: sub})
			continue
		}
		l := leaf{t: f.Type, name: f.Tag.Get("name"), group: f.Tag.Get("group"), what: fpath + " (" + f.Type.String() + ")"}
		l.optional = f.Tag.Get("optional") == "true"
		if l.name != "" && l.group != "" {
			return nil, fmt.Errorf("%s has both a name and a group tag", fpath)
		}
		obj.fields = append(obj.fields, objField{index: i, leaf: len(info.leaves)})
		info.leaves = append(info.leaves, l)
	}
	return obj, nil
}

// build makes the value of an fx.In struct from resolved leaf values.
func (o *paramObject) build(values []reflect.Value) reflect.Value {
	v := reflect.New(o.t).Elem()
	for _, f := range o.fields {
		if f.obj != nil {
			v.Field(f.index).Set(f.obj.build(values))
			continue
		}
		if lv := values[f.leaf]; lv.IsValid() {
			v.Field(f.index).Set(lv)
		}
	}
	return v
}

// leafPaths lists, for every leaf under o, its field index path.
func (o *paramObject) leafPaths(prefix []int, yield func(leaf int, path []int)) {
	for _, f := range o.fields {
		p := append(append([]int(nil), prefix...), f.index)
		if f.obj != nil {
			f.obj.leafPaths(p, yield)
			continue
		}
		yield(f.leaf, p)
	}
}

// invokeType is the parameter struct of the startup invoke: the fixed fields
// (registrations, DOT graph, logger) then one field per leaf.
const fixedFields = 4 // In, Registrations, Graph, Logger

func invokeStruct(leaves []leaf) reflect.Type {
	fields := []reflect.StructField{
		{Name: "In", Type: inType, Anonymous: true},
		{Name: "Registrations", Type: reflect.TypeFor[[]*Registration](), Tag: `group:"` + group + `"`},
		{Name: "Graph", Type: reflect.TypeFor[fx.DotGraph]()},
		{Name: "Logger", Type: reflect.TypeFor[*slog.Logger](), Tag: `optional:"true"`},
	}
	for i, l := range leaves {
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("L%d", i), Type: l.t, Tag: l.tag()})
	}
	return reflect.StructOf(fields)
}
