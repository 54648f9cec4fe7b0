package sqlitestore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/sqlitestore"
)

func Example() {
	dir, err := os.MkdirTemp("", "sqlitestore-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	store, err := sqlitestore.Open(ctx, filepath.Join(dir, "sessions.db"), sqlitestore.Options{Namespace: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	// A session with two fields, created in one transaction.
	v, err := store.Write(ctx, "visitor", cache.Write{Create: true, Fields: []cache.FieldWrite{
		cache.Set("basket", []byte("2 apples")),
		cache.Set("user", []byte("ada")),
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	// An optimistic update of one field: only if nobody wrote it since v.
	_, err = store.Write(ctx, "visitor", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("3 apples"), v)}})
	fmt.Println(err)
	_, err = store.Write(ctx, "visitor", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("stale"), v)}})
	fmt.Println(errors.Is(err, cache.ErrConflict))
	r, _ := store.Read(ctx, "visitor", "basket")
	f, _ := r.Field("basket")
	fmt.Println(string(f.Value))

	// Its time is up: it is absent at once, and the collector removes it and
	// reports it, with the fields asked for, to one caller.
	_, _ = store.Write(ctx, "visitor", cache.Write{Expires: time.Now().Add(-time.Second)})
	_, err = store.Read(ctx, "visitor")
	fmt.Println(errors.Is(err, cache.ErrNotFound))
	n, err := store.CollectGarbage(ctx, cache.GCOptions{Fields: []string{"user"}, Removed: func(r cache.Record) {
		f, _ := r.Field("user")
		fmt.Println("removed", r.Key, "of", string(f.Value))
	}})
	fmt.Println(n, err)
	// Output:
	// <nil>
	// true
	// 3 apples
	// true
	// removed visitor of ada
	// 1 <nil>
}

func ExampleModule() {
	app := fx.New(
		sqlitestore.Module("var/sessions.db", sqlitestore.Options{Namespace: "sessions"}),
		fx.Invoke(func(store cache.Store) {
			// store is ready to use once the app has started: the folder, file
			// and schema are created or checked when it starts, and the
			// database closed when it stops.
		}),
	)
	_ = app
}
