package cachetest_test

import (
	"context"
	"fmt"

	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
)

// Increment is the compare-and-set retry loop the suite's concurrency test runs;
// multi-process tests of a backend use it too.
func ExampleIncrement() {
	store := memstore.New(memstore.Options{Namespace: "example"})
	defer store.Close()
	ctx := context.Background()
	for range 3 {
		if _, err := cachetest.Increment(ctx, store, "visits", "n"); err != nil {
			fmt.Println(err)
			return
		}
	}
	n, _ := cachetest.Increment(ctx, store, "visits", "n")
	fmt.Println(n)
	// Output: 4
}
