package app_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/cmd/demo/internal/web"
	"github.com/fxsession/fxsession/internal/testserver"
)

// BenchmarkAPI runs the demo's JSON routes in process, the handler called
// directly (no sockets): what make loadtest drives over HTTP, for profiling
// the application's and the library's share of a request. read is GET
// /api/basket on a 10-item basket; add alternates adding an 11th product and
// removing it, as the load test does.
func BenchmarkAPI(b *testing.B) {
	for _, store := range []string{"memory", "redis"} {
		b.Run(store, func(b *testing.B) {
			c := &app.Config{Store: store, Namespace: "bench"}
			if store == "redis" {
				c.RedisURL = testserver.StartRedis(b).URL()
			}
			srv := demoServer(b, c)
			var products []struct{ SKU string }
			if err := json.Unmarshal(serveJSON(b, srv, http.MethodGet, "/api/products", "", "").Body.Bytes(), &products); err != nil || len(products) < 11 {
				b.Fatalf("products: %d, %v", len(products), err)
			}
			skus := make([]string, 11)
			for i := range skus {
				skus[i] = products[i].SKU
			}
			cookie := ""
			for _, sku := range skus[:10] {
				res := serveJSON(b, srv, http.MethodPost, "/api/basket/items", cookie, `{"sku":"`+sku+`","qty":1}`)
				if c := res.Header().Get("Set-Cookie"); c != "" {
					cookie = strings.SplitN(c, ";", 2)[0]
				}
			}
			b.Run("read", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					serveJSON(b, srv, http.MethodGet, "/api/basket", cookie, "")
				}
			})
			b.Run("add", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i%2 == 0 {
						serveJSON(b, srv, http.MethodPost, "/api/basket/items", cookie, `{"sku":"`+skus[10]+`","qty":1}`)
					} else {
						serveJSON(b, srv, http.MethodDelete, "/api/basket/items/"+skus[10], cookie, "")
					}
					i++
				}
			})
		})
	}
}

func demoServer(b *testing.B, c *app.Config) *web.Server {
	dir := b.TempDir()
	c.Catalog, c.Dir = filepath.Join(dir, "catalog.db"), filepath.Join(dir, "sessions")
	var srv *web.Server
	fxApp := fxtest.New(b, app.Options(c, slog.New(slog.NewTextHandler(io.Discard, nil))), fx.Populate(&srv), fx.NopLogger)
	fxApp.RequireStart()
	b.Cleanup(fxApp.RequireStop)
	return srv
}

func serveJSON(b *testing.B, srv http.Handler, method, path, cookie, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
	}
	return rec
}
