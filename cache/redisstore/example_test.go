package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// A store on a client of your own: entries with tags and lifetimes, a versioned
// write, a flush by tag.
func Example() {
	srv, stop, err := testserver.StartRedisMain() // stands in for your Redis
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	client := redisstore.NewClient(redis.UniversalOptions{Addrs: []string{srv.Addr()}})
	defer client.Close()
	store, err := redisstore.New(client, redisstore.Options{Namespace: "shop"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	ctx := context.Background()
	v1, _ := store.Set(ctx, cache.Item{Key: "basket-42", Value: []byte("2 apples"), Tags: []string{"user-7"}, TTL: time.Hour})
	_, err = store.CompareAndSet(ctx, cache.Item{Key: "basket-42", Value: []byte("3 apples"), Tags: []string{"user-7"}, TTL: time.Hour}, v1)
	fmt.Println("update:", err)
	_, err = store.CompareAndSet(ctx, cache.Item{Key: "basket-42", Value: []byte("lost update")}, v1)
	fmt.Println("stale update conflicts:", errors.Is(err, cache.ErrConflict))
	e, _ := store.Get(ctx, "basket-42")
	fmt.Printf("%s, tags %q\n", e.Value, e.Tags)
	n, _ := store.FlushByTag(ctx, "user-7")
	fmt.Println("flushed:", n)
	// Output:
	// update: <nil>
	// stale update conflicts: true
	// 3 apples, tags ["user-7"]
	// flushed: 1
}

// The backend as an fx module: the client is built, pinged on start and closed
// on stop.
func ExampleModule() {
	srv, stop, err := testserver.StartRedisMain()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	app := fx.New(
		redisstore.Module(srv.URL(), redisstore.Options{Namespace: "app"}),
		fx.Invoke(func(lc fx.Lifecycle, b cache.Backend) {
			lc.Append(fx.StartHook(func(ctx context.Context) error {
				_, err := b.Set(ctx, cache.Item{Key: "hello", Value: []byte("world")})
				return err
			}))
		}),
		fx.NopLogger,
	)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("started")
	if err := app.Stop(ctx); err != nil {
		fmt.Println(err)
	}
	// Output: started
}
