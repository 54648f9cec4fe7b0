package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
)

func Example() {
	dir, _ := os.MkdirTemp("", "filestore-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	store, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "shop"})
	if err != nil {
		fmt.Println(err)
		return
	}
	// One record, two fields, a tag: one file, written once.
	v, _ := store.Write(ctx, "visitor", cache.Write{
		Create:  true,
		Fields:  []cache.FieldWrite{cache.Set("basket", []byte("2 apples")), cache.Set("user", []byte("ada"))},
		AddTags: []string{"user:ada"},
	})
	store.Close()

	// Records, versions and tags survive a restart (or a deploy).
	store, _ = filestore.Open(filestore.Options{Dir: dir, Namespace: "shop"})
	defer store.Close()
	r, _ := store.Read(ctx, "visitor", "basket")
	f, _ := r.Field("basket")
	fmt.Println(string(f.Value), f.Version == v)

	// An optimistic update: only if nobody wrote the field since v.
	_, err = store.Write(ctx, "visitor", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("3 apples"), v)}})
	fmt.Println(err)
	_, err = store.Write(ctx, "visitor", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("stale"), v)}})
	fmt.Println(errors.Is(err, cache.ErrConflict))
	for key := range store.Tagged(ctx, "user:ada") {
		fmt.Println("tagged:", key)
	}
	// Output:
	// 2 apples true
	// <nil>
	// true
	// tagged: visitor
}

func ExampleStore_CollectGarbage() {
	dir, _ := os.MkdirTemp("", "filestore-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, _ := filestore.Open(filestore.Options{Dir: dir})
	defer store.Close()

	soon := time.Now().Add(10 * time.Millisecond)
	store.Write(ctx, "short", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("meta", []byte("m"))}, Expires: soon})
	store.Write(ctx, "long", cache.Write{Create: true, Expires: time.Now().Add(time.Hour)})
	time.Sleep(20 * time.Millisecond)

	// Expired records are absent at once; the collector removes them, at most
	// Max per call, and reports each to exactly one caller.
	_, err := store.Read(ctx, "short")
	fmt.Println(errors.Is(err, cache.ErrNotFound))
	n, _ := store.CollectGarbage(ctx, cache.GCOptions{Max: 100, Fields: []string{"meta"}, Removed: func(r cache.Record) {
		fmt.Printf("removed %s (meta %s)\n", r.Key, r.Fields[0].Value)
	}})
	fmt.Println(n)
	// Output:
	// true
	// removed short (meta m)
	// 1
}

func ExampleModule() {
	dir, _ := os.MkdirTemp("", "filestore-example")
	defer os.RemoveAll(dir)

	app := fx.New(
		fx.NopLogger,
		filestore.Module(filestore.Options{Dir: dir, Namespace: "shop.production"}),
		fx.Invoke(func(store cache.Store) {
			fmt.Println("namespace", store.Namespace())
		}),
	)
	if err := app.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	_ = app.Stop(context.Background()) // closes the store
	// Output:
	// namespace shop.production
}
