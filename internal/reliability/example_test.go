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
	mem := memstore.New(memstore.Options{})
	defer mem.Close()
	store := reliability.NewCounting(mem)

	_, _ = store.Write(ctx, "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("v"))}})
	rec, _ := store.Read(ctx, "k")
	f, _ := rec.Field("f")
	fmt.Println(string(f.Value), store.Reads(), store.Writes())
	// Output: v 1 1
}
