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

	v1, _ := store.Set(ctx, cache.Item{Key: "basket", Value: []byte("2 apples")})
	// An optimistic update: only if nobody wrote since we read v1.
	_, err := store.CompareAndSet(ctx, cache.Item{Key: "basket", Value: []byte("3 apples")}, v1)
	fmt.Println(err)
	_, err = store.CompareAndSet(ctx, cache.Item{Key: "basket", Value: []byte("stale")}, v1)
	fmt.Println(errors.Is(err, cache.ErrConflict))
	e, _ := store.Get(ctx, "basket")
	fmt.Println(string(e.Value))
	// Output:
	// <nil>
	// true
	// 3 apples
}
