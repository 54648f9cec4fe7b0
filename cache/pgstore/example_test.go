package pgstore_test

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/pgstore"
)

func Example() {
	ctx := context.Background()
	// server.DSN() is the postgres:// URL of this package's test server.
	store, err := pgstore.Open(ctx, server.DSN(), pgstore.Options{Namespace: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	// Three sessions of two users, each created in one round trip with its
	// fields, its user's tag and an expiry.
	for key, user := range map[string]string{"s1": "ada", "s2": "ada", "s3": "bob"} {
		_, err := store.Write(ctx, key, cache.Write{
			Create:  true,
			Fields:  []cache.FieldWrite{cache.Set("user", []byte(user)), cache.Set("basket", []byte("{}"))},
			AddTags: []string{"user:" + user},
			Expires: time.Now().Add(time.Hour),
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	// One field of several sessions in one statement; a missing one is absent.
	records, _ := store.ReadMany(ctx, []string{"s1", "s3", "gone"}, "user")
	for _, r := range records {
		if f, ok := r.Field("user"); ok {
			fmt.Println(r.Key, "of", string(f.Value))
		} else {
			fmt.Println(r.Key, "absent")
		}
	}
	// Sign ada out everywhere: her sessions are found through the tag index
	// and deleted with their fields and tags.
	var keys []string
	for key, err := range store.Tagged(ctx, "user:ada") {
		if err != nil {
			fmt.Println(err)
			return
		}
		keys = append(keys, key)
	}
	n, _ := store.DeleteMany(ctx, keys)
	fmt.Println("deleted", n)
	n, _ = store.DeleteMany(ctx, []string{"s3"})
	fmt.Println("deleted", n)
	// Output:
	// s1 of ada
	// s3 of bob
	// gone absent
	// deleted 2
	// deleted 1
}

func ExampleModule() {
	app := fx.New(
		pgstore.Module("postgres://app@db.internal/app", pgstore.Options{Namespace: "sessions"}),
		fx.Invoke(func(store cache.Store) {
			// store is ready to use once the app has started: the schema is
			// created or checked when it starts, and the pool closed when it
			// stops.
		}),
	)
	_ = app
}
