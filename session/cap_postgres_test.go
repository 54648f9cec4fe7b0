package session

import (
	"sync"
	"testing"

	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/pgstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// TestPerUserCapPostgres: concurrent logins of one user in two processes (two
// managers, each with its own connection pool) never leave more sessions than
// the cap, on a real Postgres (the memory, file and Redis runs are in
// TestPerUserCap).
func TestPerUserCapPostgres(t *testing.T) {
	pg := testserver.StartPostgres(t)
	const limit = 3
	ns := cachetest.Namespace("cap")
	var managers []*Manager
	for range 2 { // two processes: each its own pool, one namespace
		st, err := pgstore.Open(t.Context(), pg.DSN(), pgstore.Options{Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		m, err := New(st, Config{MaxSessionsPerUser: limit, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		managers = append(managers, m)
	}
	var wg sync.WaitGroup
	for i := range 12 {
		m := managers[i%2]
		wg.Go(func() {
			ctx, s := m.NewContext(t.Context(), "")
			if err := s.Start(ctx); err != nil {
				t.Error(err)
				return
			}
			if err := s.AddTag(ctx, m.UserTag("cyd")); err != nil {
				t.Error(err)
			}
			if err := s.Commit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, m := range managers {
		n := 0
		for _, err := range m.UserSessions(t.Context(), "cyd") {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != limit {
			t.Fatalf("process %d sees %d sessions of the user after 12 concurrent logins, want the cap %d", i+1, n, limit)
		}
	}
}
