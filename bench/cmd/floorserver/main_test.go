package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/internal/testserver"
)

// commands counts the commands a client sends.
type commands struct{ n atomic.Int64 }

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// TestFloor checks the floor's API answers as the demo's does, with one Redis
// command per read and two per add or removal.
func TestFloor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE products (sku TEXT PRIMARY KEY, name TEXT, description TEXT, price_cents INTEGER);
		INSERT INTO products VALUES ('tea', 'Tea', 'green', 450), ('cup', 'Cup', 'white', 1200)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	products, err := loadCatalog(path)
	if err != nil || len(products) != 2 {
		t.Fatalf("loadCatalog = %v, %v", products, err)
	}
	client := redis.NewClient(testserver.StartRedis(t).Options())
	defer client.Close()
	if err := client.Ping(context.Background()).Err(); err != nil { // connected before counting
		t.Fatal(err)
	}
	var cmds commands
	client.AddHook(&cmds)
	s := &server{redis: client, products: products}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/basket", s.get)
	mux.HandleFunc("POST /api/basket/items", s.add)
	mux.HandleFunc("DELETE /api/basket/items/{sku}", s.remove)

	cookie := ""
	do := func(method, path, body string, wantStatus int, wantCmds int64) basket {
		t.Helper()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		w := httptest.NewRecorder()
		before := cmds.n.Load()
		mux.ServeHTTP(w, r)
		if w.Code != wantStatus {
			t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
		}
		if n := cmds.n.Load() - before; n != wantCmds {
			t.Errorf("%s %s: %d Redis commands, want %d", method, path, n, wantCmds)
		}
		for _, c := range w.Result().Cookies() {
			if c.Name == cookieName {
				cookie = c.Name + "=" + c.Value
			}
		}
		var b basket
		if wantStatus == http.StatusOK {
			if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, w.Body)
			}
		}
		return b
	}
	do(http.MethodPost, "/api/basket/items", `{"sku":"tea","qty":2}`, http.StatusOK, 1) // new: SET only
	if cookie == "" {
		t.Fatal("the first add sent no cookie")
	}
	do(http.MethodPost, "/api/basket/items", `{"sku":"cup"}`, http.StatusOK, 2)
	do(http.MethodPost, "/api/basket/items", `{"sku":"nope"}`, http.StatusNotFound, 0)
	do(http.MethodPost, "/api/basket/items", `{`, http.StatusBadRequest, 0)
	b := do(http.MethodGet, "/api/basket", "", http.StatusOK, 1)
	if len(b.Items) != 2 || b.TotalCents != 2*450+1200 || b.Items[0].Name != "Tea" {
		t.Errorf("basket %+v", b)
	}
	b = do(http.MethodDelete, "/api/basket/items/tea", "", http.StatusOK, 2)
	if len(b.Items) != 1 || b.TotalCents != 1200 {
		t.Errorf("after removal %+v", b)
	}
}
