package memstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
)

func Example() {
	ctx := context.Background()
	store := memstore.New(memstore.Options{Namespace: "test"})
	defer store.Close()

	// A record with two fields, written in one call.
	v1, _ := store.Write(ctx, "visitor", cache.Write{Create: true, Fields: []cache.FieldWrite{
		cache.Set("basket", []byte("2 apples")),
		cache.Set("user", []byte("ada")),
	}})
	// An optimistic update of one field: only if nobody wrote it since v1.
	_, err := store.Write(ctx, "visitor", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("3 apples"), v1)}})
	fmt.Println(err)
	_, err = store.Write(ctx, "visitor", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("stale"), v1)}})
	fmt.Println(errors.Is(err, cache.ErrConflict))
	r, _ := store.Read(ctx, "visitor", "basket")
	f, _ := r.Field("basket")
	fmt.Println(string(f.Value))
	// Output:
	// <nil>
	// true
	// 3 apples
}
