package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/pgstore"
)

func Example() {
	ctx := context.Background()
	// server.DSN() is a postgres://... URL of a test server.
	s, err := pgstore.Open(ctx, server.DSN(), pgstore.Options{Namespace: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	v, err := s.Set(ctx, cache.Item{Key: "greeting", Value: []byte("hello"), Tags: []string{"demo"}, TTL: time.Hour})
	if err != nil {
		fmt.Println(err)
		return
	}
	e, _ := s.Get(ctx, "greeting")
	fmt.Println(string(e.Value), e.Version == v)

	// A write against a version that is not the stored one is refused.
	_, err = s.CompareAndSet(ctx, cache.Item{Key: "greeting", Value: []byte("stale")}, v+1)
	fmt.Println(errors.Is(err, cache.ErrConflict))

	n, _ := s.FlushByTag(ctx, "demo")
	fmt.Println(n)
	// Output:
	// hello true
	// true
	// 1
}

func ExampleModule() {
	app := fx.New(
		pgstore.Module("postgres://app@db.internal/app", pgstore.Options{Namespace: "sessions"}),
		fx.Invoke(func(b cache.Backend) {
			// b is ready to use once the app has started.
		}),
	)
	_ = app
}
