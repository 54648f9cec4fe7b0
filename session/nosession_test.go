package session_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/fxsession/fxsession/session"
)

// TestNoSessionInContext is the newcomer's trap: FromContext outside the
// middleware (the pattern of the getting-started guide, with the ok ignored)
// gives a nil *Session, and every method on it, on its bags and flashes and on
// its extension view, answers an error matching ErrNoSession: never a panic.
func TestNoSessionInContext(t *testing.T) {
	ctx := context.Background()
	s, ok := session.FromContext(ctx)
	if ok || s != nil {
		t.Fatalf("FromContext outside the middleware = %v, %v", s, ok)
	}
	noSession := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, session.ErrNoSession) {
			t.Errorf("%s on a nil session = %v, want ErrNoSession", what, err)
		}
	}
	noSession("Put", s.Put(ctx, "user", "alice"))
	var v string
	noSession("Get", s.Get(ctx, "user", &v))
	_, err := s.Has(ctx, "user")
	noSession("Has", err)
	noSession("Remove", s.Remove(ctx, "user"))
	noSession("Start", s.Start(ctx))
	_, err = s.IsStarted(ctx)
	noSession("IsStarted", err)
	_, err = s.ID(ctx)
	noSession("ID", err)
	noSession("RenewID", s.RenewID(ctx))
	noSession("Destroy", s.Destroy(ctx, "logout"))
	noSession("Touch", s.Touch(ctx))
	_, err = s.LastActivity(ctx)
	noSession("LastActivity", err)
	_, err = s.Metadata(ctx)
	noSession("Metadata", err)
	noSession("AddTag", s.AddTag(ctx, "user:alice"))
	noSession("RemoveTag", s.RemoveTag(ctx, "user:alice"))
	_, err = s.Tags(ctx)
	noSession("Tags", err)
	noSession("Commit", s.Commit(ctx))
	if s.Ref() != "" || s.IsReadOnly() || s.ReadOnly() != nil {
		t.Errorf("Ref, IsReadOnly, ReadOnly of a nil session = %q, %v, %v", s.Ref(), s.IsReadOnly(), s.ReadOnly())
	}
	noSession("ReadOnly().Put", s.ReadOnly().Put(ctx, "k", 1))

	// Bags: the Bag returned with the error is usable and answers it again.
	bag, err := s.Bag("cart")
	noSession("Bag", err)
	if bag.Name() != "cart" {
		t.Errorf("Name = %q", bag.Name())
	}
	noSession("Bag.Set", bag.Set(ctx, "k", 1))
	noSession("Bag.Get", bag.Get(ctx, "k", &v))
	_, err = bag.Has(ctx, "k")
	noSession("Bag.Has", err)
	noSession("Bag.Remove", bag.Remove(ctx, "k"))
	_, err = bag.Keys(ctx)
	noSession("Bag.Keys", err)
	_, err = bag.All(ctx)
	noSession("Bag.All", err)
	noSession("Bag.Clear", bag.Clear(ctx))
	var nilBag *session.Bag
	noSession("(*Bag)(nil).Set", nilBag.Set(ctx, "k", 1))

	f := s.Flashes()
	noSession("Flashes.Add", f.Add(ctx, "notice", "saved"))
	_, err = f.Get(ctx, "notice")
	noSession("Flashes.Get", err)
	_, err = f.Peek(ctx, "notice")
	noSession("Flashes.Peek", err)
	_, err = f.Has(ctx, "notice")
	noSession("Flashes.Has", err)
	_, err = f.All(ctx)
	noSession("Flashes.All", err)
	_, err = f.PeekAll(ctx)
	noSession("Flashes.PeekAll", err)

	x := session.ExtensionOf(s)
	_, _, err = x.Field(ctx, "basket")
	noSession("Extension.Field", err)
	_, _, err = x.ReadField(ctx, "basket")
	noSession("Extension.ReadField", err)
	noSession("Extension.StageField", x.StageField(ctx, "basket", []byte{1}))
	_, err = x.WriteField(ctx, "basket", []byte{1}, 0)
	noSession("Extension.WriteField", err)
	noSession("Extension.OnCommit", x.OnCommit(func(context.Context) error { return nil }))
	noSession("Extension.SetLocal", x.SetLocal("k", 1))
	if x.Local("k") != nil || x.Development() || x.Logger() == nil || x.Session() != nil {
		t.Error("the extension view of a nil session")
	}

	// The same for a zero Session, as a struct literal gives.
	noSession("(&Session{}).Put", (&session.Session{}).Put(ctx, "k", 1))
	noSession("(&Session{}).Bag", func() error { _, err := (&session.Session{}).Bag("cart"); return err }())
}

// TestNoSessionEveryMethod calls every exported method of *Session, *Bag,
// *Flashes and Extension (found by reflection, so that a method added later is
// covered) on what a missing session gives: none may panic, and every error
// result must match ErrNoSession.
func TestNoSessionEveryMethod(t *testing.T) {
	var s *session.Session
	bag, _ := s.Bag("cart")
	for _, recv := range []any{s, bag, (*session.Bag)(nil), s.Flashes(), session.ExtensionOf(s), &session.Session{}} {
		rv := reflect.ValueOf(recv)
		for i := range rv.NumMethod() {
			m := rv.Type().Method(i)
			t.Run(fmt.Sprintf("%T.%s", recv, m.Name), func(t *testing.T) {
				fn := rv.Method(i)
				args := make([]reflect.Value, fn.Type().NumIn())
				for j := range args {
					args[j] = argFor(t, fn.Type().In(j))
				}
				var out []reflect.Value
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("panicked: %v", p)
						}
					}()
					out = fn.Call(args)
				}()
				errType := reflect.TypeFor[error]()
				for _, o := range out {
					if o.Type() != errType || o.IsNil() {
						continue
					}
					if err := o.Interface().(error); !errors.Is(err, session.ErrNoSession) {
						t.Errorf("error %v, want ErrNoSession", err)
					}
				}
			})
		}
	}
}

// argFor returns a harmless argument of type typ.
func argFor(t *testing.T, typ reflect.Type) reflect.Value {
	t.Helper()
	switch {
	case typ == reflect.TypeFor[context.Context]():
		return reflect.ValueOf(context.Background())
	case typ.Kind() == reflect.String:
		return reflect.ValueOf("k").Convert(typ)
	case typ.Kind() == reflect.Interface: // any: a decoding destination or a value
		return reflect.ValueOf(new(int))
	case typ.Kind() == reflect.Func: // OnCommit's hook
		return reflect.MakeFunc(typ, func([]reflect.Value) []reflect.Value {
			return []reflect.Value{reflect.Zero(typ.Out(0))}
		})
	}
	return reflect.Zero(typ) // []byte, cache.Version
}
