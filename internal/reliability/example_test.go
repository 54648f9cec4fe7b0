package reliability_test

import (
	"context"
	"fmt"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/internal/reliability"
)

// Counting shows which calls reach the store: here one write and one read.
func ExampleCounting() {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{JanitorInterval: -1})
	defer mem.Close()
	store := reliability.NewCounting(mem)

	_, _ = store.Set(ctx, cache.Item{Key: "k", Value: []byte("v")})
	e, _ := store.Get(ctx, "k")
	fmt.Println(string(e.Value), store.Reads(), store.Writes())
	// Output: v 1 1
}
