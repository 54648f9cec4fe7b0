package filestore_test

import (
	"context"
	"fmt"
	"os"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
)

func Example() {
	dir, _ := os.MkdirTemp("", "filestore-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	store, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "production"})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, _ := store.Set(ctx, cache.Item{Key: "session:1", Value: []byte("basket"), Tags: []string{"user@example.com"}})
	store.Close()

	// Entries, versions and tags survive a restart.
	store, _ = filestore.Open(filestore.Options{Dir: dir, Namespace: "production"})
	defer store.Close()
	e, _ := store.Get(ctx, "session:1")
	fmt.Println(string(e.Value), e.Version == v)
	n, _ := store.FlushByTag(ctx, "user@example.com")
	fmt.Println("flushed", n)
	// Output:
	// basket true
	// flushed 1
}
