package scope

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/inject"
	"github.com/fxsession/fxsession/session"
)

// reqState holds one request's instances, in the session's Local slot.
type reqState struct {
	reg    *registry
	sess   *session.Session
	ext    session.Extension
	slots  []slot
	inline [2]slot // slots' array when the registry has at most two types
}

type slot struct {
	mu   sync.Mutex // resolution, Update and commit of this type
	inst atomic.Pointer[instance]
}

// instance is one request's object of one type. Its fields other than obj are
// guarded by the slot's mutex.
type instance struct {
	obj      any
	hook     *autostartHook
	tracker  *inject.Tracker
	baseline []byte // the encoding last loaded or written; nil: write at the next commit
	stored   bool   // the session was started when the instance was made (baseline is meaningful)
	print    uint64 // the autostart fingerprint when made (unstarted sessions only)
	// clean: the encoding of obj is baseline and the pointer has not been handed
	// out (by Get, or into another instance) since, so nothing can have changed
	// it and commit need not encode it. Set when Update installs the instance;
	// cleared whenever instance returns it.
	clean atomic.Bool
	// seen: the entry as this request last read or wrote it — its bytes (nil:
	// absent) and version — for Update's first attempt to start from instead
	// of reading again (the compare-and-set's version check catches a stale
	// one). Cleared when a commit point writes the type without a version.
	seen        []byte
	seenVersion cache.Version
	seenKnown   bool
	// updated: Update changed it while the visitor had no session and the change
	// did not start one (development mode warns if nothing else does).
	updated bool
}

// state returns the request's state, creating it (and its commit hook) once.
func (r *registry) state(s *session.Session) (*reqState, error) {
	ext := session.ExtensionOf(s)
	if st, ok := ext.Local(r).(*reqState); ok {
		return st, nil
	}
	st := &reqState{reg: r, sess: s, ext: ext}
	if n := len(r.entries); n <= len(st.inline) {
		st.slots = st.inline[:n]
	} else {
		st.slots = make([]slot, n)
	}
	// Two goroutines of one request may get here together: the session's
	// lock decides which state is the request's, and only that one registers
	// its commit hook.
	actual, loaded, err := ext.LoadOrStoreLocal(r, st)
	if err != nil {
		return nil, err
	}
	if loaded {
		return actual.(*reqState), nil
	}
	if err := ext.OnCommit(st.commit); err != nil {
		return nil, err
	}
	return st, nil
}

// Refresh drops the request's instances: the next Get loads them afresh. The
// session calls it after Session.Sync (session.Refresher).
func (st *reqState) Refresh() {
	for i := range st.slots {
		sl := &st.slots[i]
		sl.mu.Lock()
		sl.inst.Store(nil)
		sl.mu.Unlock()
	}
}

// instance returns the request's instance of e, resolving it on first use.
func (st *reqState) instance(ctx context.Context, e *entry) (*instance, error) {
	sl := &st.slots[e.idx]
	if p := sl.inst.Load(); p != nil {
		p.handOut()
		return p, nil
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if p := sl.inst.Load(); p != nil {
		p.handOut()
		return p, nil
	}
	started, err := st.sess.IsStarted(ctx)
	if err != nil {
		return nil, err
	}
	var inst *instance
	if !started {
		if inst, err = st.construct(ctx, e); err != nil {
			return nil, err
		}
		if e.plan.HasAutostart() {
			if inst.print, err = e.plan.Fingerprint(inst.obj); err != nil {
				return nil, err
			}
		}
	} else {
		data, version, err := st.ext.Field(ctx, e.key)
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return nil, err
		}
		if inst, err = st.build(ctx, e, data); err != nil {
			return nil, err
		}
		inst.seen, inst.seenVersion, inst.seenKnown = data, version, true
		if data == nil {
			// Nothing stored yet: remember the fresh state so that an untouched
			// object is not written.
			if inst.baseline, err = e.plan.Encode(ctx, inst.obj, inst.tracker); err != nil {
				return nil, err
			}
		}
	}
	sl.inst.Store(inst)
	return inst, nil
}

// handOut records that the instance's pointer leaves scope's hands: its caller
// may change it, so commit must compare its encoding again.
func (inst *instance) handOut() {
	if inst.clean.Load() {
		inst.clean.Store(false)
	}
}

// build makes an instance of e in a started session from stored data (nil: none
// stored): a constructor call (or a copy of the prototype, see restore), then the
// state decoded into it. Data that no longer
// fits the type gives a fresh instance and a warning; it is replaced at the next
// write.
func (st *reqState) build(ctx context.Context, e *entry, data []byte) (*instance, error) {
	construct := st.construct
	if data != nil {
		construct = st.restore // the state is decoded over it
	}
	inst, err := construct(ctx, e)
	if err != nil {
		return nil, err
	}
	inst.stored = true
	if data == nil {
		return inst, nil
	}
	err = e.plan.Decode(ctx, data, inst.obj, inst.tracker)
	switch {
	case err == nil:
		st.ext.Metrics().Decoded(ctx, e.t)
		inst.baseline = data
		return inst, nil
	case errors.Is(err, inject.ErrIncompatible):
		st.reg.logger.WarnContext(ctx, "fxsession: a stored session-scoped object no longer fits its type; starting it afresh",
			"type", e.t.String(), "session", st.sess.Ref(), "error", err)
		fresh, err := st.construct(ctx, e)
		if err != nil {
			return nil, err
		}
		fresh.stored = true
		return fresh, nil // baseline nil: the broken entry is replaced at the next commit
	default:
		return nil, fmt.Errorf("scope: loading %s: %w", e.t, err)
	}
}

// construct calls e's constructor with the singletons resolved at startup and the
// request's instances of the session-scoped types it takes, then fills the
// `inject` fields it left zero.
func (st *reqState) construct(ctx context.Context, e *entry) (*instance, error) {
	v, err := callConstructor(ctx, e, st)
	if err != nil {
		return nil, err
	}
	return newInstance(e, v), nil
}

// newInstance makes v, a new object of e's type, a request's instance.
func newInstance(e *entry, v reflect.Value) *instance {
	elem := v.Elem()
	inst := &instance{obj: v.Interface()}
	if e.plan.HasEntities() {
		inst.tracker = inject.NewTracker()
	}
	if e.auto != nil {
		inst.hook = &autostartHook{}
		elem.FieldByIndex(e.auto).Addr().Interface().(*Autostart).hook = inst.hook
	}
	return inst
}

// depResolver gives a constructor the request's instance of a scoped type it
// takes.
type depResolver interface {
	dep(ctx context.Context, d *entry) (any, error)
}

// dep is the request's instance of the session-scoped d.
func (st *reqState) dep(ctx context.Context, d *entry) (any, error) {
	inst, err := st.instance(ctx, d)
	if err != nil {
		return nil, err
	}
	return inst.obj, nil
}

// callConstructor calls e's constructor with the singletons resolved at start
// and the instances deps gives for the scoped types it takes, then fills the
// `inject` fields it left zero. The result is a non-nil pointer.
func callConstructor(ctx context.Context, e *entry, deps depResolver) (reflect.Value, error) {
	args := e.args
	if len(e.scoped) > 0 || len(e.ctxArgs) > 0 {
		args = append([]reflect.Value(nil), e.args...)
		for _, i := range e.ctxArgs {
			args[i] = reflect.ValueOf(&ctx).Elem() // the interface, not its dynamic type
		}
		for _, s := range e.scoped {
			obj, err := deps.dep(ctx, s.dep)
			if err != nil {
				return reflect.Value{}, err
			}
			dv := reflect.ValueOf(obj)
			if s.path == nil {
				args[s.arg] = dv
				continue
			}
			v := reflect.New(args[s.arg].Type()).Elem()
			v.Set(args[s.arg])
			v.FieldByIndex(s.path).Set(dv)
			args[s.arg] = v
		}
	}
	out := e.fn.Call(args)
	if e.hasErr {
		if err, _ := out[1].Interface().(error); err != nil {
			return reflect.Value{}, fmt.Errorf("scope: %s: %w", e.name, err)
		}
	}
	v := out[0]
	if v.IsNil() {
		return reflect.Value{}, fmt.Errorf("scope: %s returned a nil %s", e.name, e.t)
	}
	elem := v.Elem()
	for _, in := range e.injects {
		f := elem.FieldByIndex(in.index)
		if !f.IsZero() {
			continue
		}
		if in.dep == nil {
			f.Set(in.value)
			continue
		}
		obj, err := deps.dep(ctx, in.dep)
		if err != nil {
			return reflect.Value{}, err
		}
		f.Set(reflect.ValueOf(obj))
	}
	return v, nil
}

// triggered reports whether the instance asks for the session to start: its
// StartSession was called, or an autostart field changed since it was made.
func (inst *instance) triggered(e *entry) (bool, error) {
	if inst.hook != nil && inst.hook.called.Load() {
		return true, nil
	}
	if inst.stored || !e.plan.HasAutostart() {
		return false, nil
	}
	print, err := e.plan.Fingerprint(inst.obj)
	return print != inst.print, err
}

// commit runs at each commit point of the request (session.Extension.OnCommit): it starts
// the session when an instance triggers autostart, then stages the instances
// whose encoding changed.
func (st *reqState) commit(ctx context.Context) error {
	started, err := st.sess.IsStarted(ctx)
	if err != nil {
		return err
	}
	reg := st.reg
	if !started {
		trigger := false
		for i, e := range reg.entries {
			sl := &st.slots[i]
			if sl.inst.Load() == nil {
				continue // never asked for in this request: nothing to check
			}
			sl.mu.Lock()
			if inst := sl.inst.Load(); inst != nil {
				t, terr := inst.triggered(e)
				trigger = trigger || t
				err = errors.Join(err, terr)
			}
			sl.mu.Unlock()
		}
		if err != nil {
			return err
		}
		if !trigger {
			st.warnUnstored()
			return nil
		}
		if err := st.sess.Start(ctx); err != nil {
			return err
		}
	}
	var errs []error
	for i, e := range reg.entries {
		sl := &st.slots[i]
		if sl.inst.Load() == nil {
			continue // never asked for in this request: nothing to write
		}
		sl.mu.Lock()
		if inst := sl.inst.Load(); inst != nil && !(inst.clean.Load() && inst.baseline != nil) {
			baseline := inst.baseline
			if baseline == nil && !inst.stored {
				// Built before the session existed: store it only if it differs
				// from a fresh instance (autostart started the session for
				// another object, or this one changed).
				if baseline, err = st.freshEncoding(ctx, e); err != nil {
					errs = append(errs, err)
					sl.mu.Unlock()
					continue
				}
			}
			enc, changed, err := e.plan.EncodeChanged(ctx, inst.obj, inst.tracker, baseline)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("scope: encoding %s: %w", e.t, err))
			case !changed:
			default:
				if err := st.ext.StageField(ctx, e.key, enc); err != nil {
					errs = append(errs, fmt.Errorf("scope: storing %s: %w", e.t, err))
				} else {
					inst.baseline = enc
					inst.seen, inst.seenVersion, inst.seenKnown = nil, 0, false
				}
			}
		}
		sl.mu.Unlock()
	}
	return errors.Join(errs...)
}

// freshEncoding is the encoding of a fresh instance of e, made by its
// constructor: what an object built before the session started is compared
// with. Slot lock held.
func (st *reqState) freshEncoding(ctx context.Context, e *entry) ([]byte, error) {
	fresh, err := st.construct(ctx, e)
	if err != nil {
		return nil, err
	}
	enc, err := e.plan.Encode(ctx, fresh.obj, fresh.tracker)
	if err != nil {
		return nil, fmt.Errorf("scope: encoding %s: %w", e.t, err)
	}
	return enc, nil
}

// warnUnstored logs, in development mode and once per type, the Updates whose
// change ends with the request because no session holds it.
func (st *reqState) warnUnstored() {
	if !st.ext.Development() {
		return
	}
	for i, e := range st.reg.entries {
		sl := &st.slots[i]
		sl.mu.Lock()
		inst := sl.inst.Load()
		updated := inst != nil && inst.updated
		sl.mu.Unlock()
		if updated && e.warnedUnstored.CompareAndSwap(false, true) {
			st.ext.Logger().Warn("fxsession: Handle.Update changed a session-scoped object of a visitor without a session, and nothing started one: the change ends with the request (give the type an autostart field, start the session first, or pass scope.MustStore() to be told)",
				"type", e.t.String())
		}
	}
}
