package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// A store on a client of your own: a record of several versioned fields with a
// tag and an expiry, read in one round trip, changed by a conditional write.
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
	_, err = store.Write(ctx, "sel-42", cache.Write{
		Create:  true,
		Fields:  []cache.FieldWrite{cache.Set("meta", []byte("created now")), cache.Set("basket", []byte("2 apples"))},
		AddTags: []string{"user-7"},
		Expires: time.Now().Add(time.Hour),
	})
	fmt.Println("created:", err)

	rec, _ := store.Read(ctx, "sel-42", "basket")
	basket, _ := rec.Field("basket")
	_, err = store.Write(ctx, "sel-42", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("3 apples"), basket.Version)}})
	fmt.Println("update:", err)
	_, err = store.Write(ctx, "sel-42", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("lost update"), basket.Version)}})
	fmt.Println("stale update conflicts:", errors.Is(err, cache.ErrConflict))

	rec, _ = store.Read(ctx, "sel-42")
	basket, _ = rec.Field("basket")
	fmt.Printf("%s, tags %q\n", basket.Value, rec.Tags)
	for key := range store.Tagged(ctx, "user-7") {
		fmt.Println("tagged user-7:", key)
	}
	deleted, _ := store.Delete(ctx, "sel-42")
	fmt.Println("deleted:", deleted)
	// Output:
	// created: <nil>
	// update: <nil>
	// stale update conflicts: true
	// 3 apples, tags ["user-7"]
	// tagged user-7: sel-42
	// deleted: true
}

// The store as an fx module: the client is built from the URL, pinged on start
// and closed on stop.
func ExampleModule() {
	srv, stop, err := testserver.StartRedisMain()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	app := fx.New(
		redisstore.Module(srv.URL(), redisstore.Options{Namespace: "app"}),
		fx.Invoke(func(lc fx.Lifecycle, s cache.Store) {
			lc.Append(fx.StartHook(func(ctx context.Context) error {
				_, err := s.Write(ctx, "hello", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("greeting", []byte("world"))}})
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

// The durability mode: every write waits for a replica in the same round trip,
// and fails rather than be acknowledged while no replica has it.
func ExampleOptions_durability() {
	master, stopMaster, err := testserver.StartRedisMain(testserver.WithRedisArgs("--repl-diskless-sync-delay", "0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stopMaster()
	host, port, _ := net.SplitHostPort(master.Addr())
	replica, stopReplica, err := testserver.StartRedisMain(testserver.WithRedisArgs("--replicaof", host, port))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stopReplica()
	ctx := context.Background()
	for { // wait until the replica is connected and acknowledges a write
		info, _ := master.Client().Info(ctx, "replication").Result()
		if strings.Contains(info, "connected_slaves:1") {
			master.Client().Set(ctx, "probe", "1", 0)
			if n, _ := master.Client().Do(ctx, "WAIT", 1, 100).Int(); n == 1 {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}

	// ReplicaTimeout must stay below the client's ReadTimeout (WAIT answers within it).
	client := redisstore.NewClient(redis.UniversalOptions{Addrs: []string{master.Addr()}, ReadTimeout: 3 * time.Second})
	defer client.Close()
	store, err := redisstore.New(client, redisstore.Options{Namespace: "safe", MinReplicas: 1, ReplicaTimeout: time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = store.Write(ctx, "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("1"))}})
	fmt.Println("with the replica:", err)

	_ = replica.Pause() // the replica stops answering
	_, err = store.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("2"))}})
	fmt.Println("without it, unavailable:", errors.Is(err, cache.ErrUnavailable))
	_ = replica.Resume()
	// Output:
	// with the replica: <nil>
	// without it, unavailable: true
}
