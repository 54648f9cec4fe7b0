package bench

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"go.uber.org/dig"
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/testserver"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// The benchmark names are read by scripts (cmd/report): keep them.

// BenchmarkNoSession: a request without a cookie whose handler never touches a
// session. gorilla/sessions has no middleware, so its handler is the bare one.
func BenchmarkNoSession(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		serve(b, bare, newRequest(http.MethodGet, ""), false)
	})
	b.Run("fxsession", func(b *testing.B) {
		s := newFx(b, newMemory(b))
		serve(b, s.mgr.Middleware(bare), newRequest(http.MethodGet, ""), false)
	})
	b.Run("scs", func(b *testing.B) {
		sm := newScsMemory(b)
		serve(b, sm.LoadAndSave(bare), newRequest(http.MethodGet, ""), false)
	})
	b.Run("gorilla", func(b *testing.B) {
		serve(b, bare, newRequest(http.MethodGet, ""), true)
	})
}

// BenchmarkReadBasket: a request on an existing session that reads the 10-item
// basket and changes nothing. floor is the same read through a bare handler:
// one map read and one msgpack decode.
func BenchmarkReadBasket(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		serve(b, floorRead(b, 10), newRequest(http.MethodGet, "fxsession=x"), false)
	})
	b.Run("fxsession", func(b *testing.B) {
		s := newFx(b, newMemory(b))
		c := s.start(b, 10, nil)
		serve(b, s.read(), newRequest(http.MethodGet, c), false)
	})
	b.Run("scs", func(b *testing.B) {
		sm := newScsMemory(b)
		c := scsStart(b, sm, 10)
		serve(b, scsRead(sm), newRequest(http.MethodGet, c), false)
	})
	b.Run("gorilla", func(b *testing.B) {
		st := newGorillaFS(b)
		c := gorillaStart(b, st, 10)
		serve(b, gorillaRead(st), newRequest(http.MethodGet, c), true)
	})
	b.Run("gorilla-cookie", func(b *testing.B) {
		st := newGorillaCookie()
		c := gorillaStart(b, st, 10)
		serve(b, gorillaRead(st), newRequest(http.MethodGet, c), true)
	})
}

// BenchmarkAddItem: a request on an existing session that adds an item to the
// 10-item basket and removes the oldest one. floor is the same change through a
// bare handler: one map read, one msgpack decode, one encode, one map write.
func BenchmarkAddItem(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		serve(b, floorAdd(b, 10), newRequest(http.MethodPost, "fxsession=x"), false)
	})
	b.Run("fxsession", func(b *testing.B) {
		s := newFx(b, newMemory(b))
		c := s.start(b, 10, nil)
		serve(b, s.add(), newRequest(http.MethodPost, c), false)
	})
	b.Run("scs", func(b *testing.B) {
		sm := newScsMemory(b)
		c := scsStart(b, sm, 10)
		serve(b, scsAdd(sm), newRequest(http.MethodPost, c), false)
	})
	b.Run("gorilla", func(b *testing.B) {
		st := newGorillaFS(b)
		c := gorillaStart(b, st, 10)
		serve(b, gorillaAdd(st), newRequest(http.MethodPost, c), true)
	})
	b.Run("gorilla-cookie", func(b *testing.B) {
		st := newGorillaCookie()
		c := gorillaStart(b, st, 10)
		serve(b, gorillaAdd(st), newRequest(http.MethodPost, c), true)
	})
}

// BenchmarkAddItemGet: the add of BenchmarkAddItem/fxsession written the
// non-atomic way: Get, change in place, written at the commit point.
func BenchmarkAddItemGet(b *testing.B) {
	b.Run("fxsession", func(b *testing.B) {
		s := newFx(b, newMemory(b))
		c := s.start(b, 10, nil)
		serve(b, s.addGet(), newRequest(http.MethodPost, c), false)
	})
}

// BenchmarkAddItemRedis: the add on a real redis-server (scs with
// goredisstore), with the Redis round trips and commands per request.
func BenchmarkAddItemRedis(b *testing.B) {
	srv := testserver.StartRedis(b)
	b.Run("fxsession", func(b *testing.B) {
		e := newRedisEnv(b, srv)
		s := newFxRedis(b, e)
		c := s.start(b, 10, nil)
		serveRedis(b, e, s.add(), newRequest(http.MethodPost, c))
	})
	b.Run("scs", func(b *testing.B) {
		e := newRedisEnv(b, srv)
		sm := newScsRedis(e)
		c := scsStart(b, sm, 10)
		serveRedis(b, e, scsAdd(sm), newRequest(http.MethodPost, c))
	})
}

// BenchmarkReadBasketRedis: the read on a real redis-server, with the Redis
// round trips and commands per request.
func BenchmarkReadBasketRedis(b *testing.B) {
	srv := testserver.StartRedis(b)
	b.Run("fxsession", func(b *testing.B) {
		e := newRedisEnv(b, srv)
		s := newFxRedis(b, e)
		c := s.start(b, 10, nil)
		serveRedis(b, e, s.read(), newRequest(http.MethodGet, c))
	})
	b.Run("scs", func(b *testing.B) {
		e := newRedisEnv(b, srv)
		sm := newScsRedis(e)
		c := scsStart(b, sm, 10)
		serveRedis(b, e, scsRead(sm), newRequest(http.MethodGet, c))
	})
}

// BenchmarkBasketSize: the fxsession add on baskets of 10, 100 and 1000 items.
func BenchmarkBasketSize(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run("fxsession-"+strconv.Itoa(n), func(b *testing.B) {
			s := newFx(b, newMemory(b))
			c := s.start(b, n, nil)
			serve(b, s.add(), newRequest(http.MethodPost, c), false)
		})
	}
}

// BenchmarkTouchOneOf20: 20 session-scoped types registered and stored; the
// request adds to the basket (as BenchmarkAddItem/fxsession) and touches none
// of the 19 others.
func BenchmarkTouchOneOf20(b *testing.B) {
	b.Run("fxsession", func(b *testing.B) {
		opts, fill := nineteen()
		s := newFx(b, newMemory(b), opts)
		c := s.start(b, 10, fill)
		serve(b, s.add(), newRequest(http.MethodPost, c), false)
	})
}

// BenchmarkResolve: getting a fresh session-scoped basket (constructed with its
// singleton dependency) for a request, against building a dig child scope per
// request, providing the basket's constructor to it and invoking it.
func BenchmarkResolve(b *testing.B) {
	b.Run("fxsession", func(b *testing.B) {
		s := newFx(b, newMemory(b))
		b.ReportAllocs()
		for b.Loop() {
			ctx, _ := s.mgr.NewContext(context.Background(), "")
			bk, err := s.basket.Get(ctx)
			if err != nil || bk.Pricing() == nil {
				b.Fatalf("Get: %v", err)
			}
		}
	})
	b.Run("digscope", func(b *testing.B) {
		c := dig.New()
		if err := c.Provide(NewPricing); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			req := c.Scope("request")
			if err := req.Provide(NewBasket); err != nil {
				b.Fatal(err)
			}
			if err := req.Invoke(func(bk *Basket) {
				if bk.Pricing() == nil {
					b.Fatal("no pricing")
				}
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkResolveRequest resolves a request-scoped object with two
// dependencies (a singleton and another request-scoped object) once per
// request, with the request's begin and end: fxsession's request scope (no dig
// on the request path; session.Exchange is the request, as package grpcsession
// uses it) against a per-request dig child scope.
func BenchmarkResolveRequest(b *testing.B) {
	b.Run("fxsession", func(b *testing.B) {
		var (
			m     *session.Manager
			quote scope.RequestHandle[*Quote]
		)
		app := fx.New(fx.NopLogger,
			fx.Supply(session.Config{GCInterval: session.Never, Logger: quiet()}),
			fx.Provide(func() cache.Store { return newMemory(b) }),
			session.Module,
			fx.Provide(NewPricing),
			scope.ProvideRequest(NewRates),
			scope.ProvideRequest(NewQuote),
			fx.Populate(&m, &quote),
		)
		if err := app.Err(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			ctx, x := m.Begin(context.Background(), "", session.Peer{})
			q, err := quote.Get(ctx)
			if err != nil || !q.Ready() {
				b.Fatalf("Get: %v", err)
			}
			x.End()
		}
	})
	b.Run("digscope", func(b *testing.B) {
		c := dig.New()
		if err := c.Provide(NewPricing); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			req := c.Scope("request")
			if err := req.Provide(NewRates); err != nil {
				b.Fatal(err)
			}
			if err := req.Provide(NewQuote); err != nil {
				b.Fatal(err)
			}
			if err := req.Invoke(func(q *Quote) {
				if !q.Ready() {
					b.Fatal("quote not ready")
				}
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
