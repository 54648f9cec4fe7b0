package sessionctl_test

import (
	"context"
	"fmt"
	"os"

	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/session"
	"github.com/fxsession/fxsession/session/sessionctl"
)

// Mount the commands in a program's own command line: pass the manager of the
// application's store and the arguments after the program's "sessions" word.
func ExampleRun() {
	store := memstore.New(memstore.Options{}) // the application's store
	defer store.Close()
	m, _ := session.New(store, session.Config{GCInterval: session.Never})

	// Alice signs in on two devices (what a login handler does).
	for range 2 {
		ctx, s := m.NewContext(context.Background(), "")
		_ = s.Start(ctx)
		_ = s.AddTag(ctx, "user:alice")
		_ = s.Commit(ctx)
	}

	// myapp sessions destroy-tag user:alice
	err := sessionctl.Run(context.Background(), m, []string{"destroy-tag", "user:alice"},
		sessionctl.Output{Out: os.Stdout, Progress: os.Stderr})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// destroyed 2 sessions tagged user:alice
}
