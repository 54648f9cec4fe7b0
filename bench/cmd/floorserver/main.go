// Command floorserver is the floor of `make loadtest`: the demo shop's JSON
// basket API written with nothing but net/http, encoding/json and go-redis,
// doing the least any Redis-backed basket must do per request — one GET per
// read, GET + SET per add or removal. No session library: the cookie's value
// (128 random bits) names the Redis key, the basket is a JSON document holding
// copies of its products, the catalog is read into memory once at start, and
// there is no version check, no lock, no ID renewal and no expiry refresh on
// reads (a SET gives the key the session's hour).
//
//	floorserver -addr 127.0.0.1:8082 -redis-url redis://127.0.0.1:6379/0 -catalog var/catalog.db
//
// It reads the catalog database the demo created and serves:
//
//	GET    /healthz                   ok
//	GET    /api/basket                {"items":[{"sku","name","qty","price_cents"}],"total_cents":N}
//	POST   /api/basket/items          {"sku","qty"}: adds, answers the basket
//	DELETE /api/basket/items/{sku}    removes, answers the basket
//
// with the demo's answers to an unknown sku (404) and a bad body (400).
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // the demo's catalog driver
)

const (
	cookieName = "floor"
	keyPrefix  = "floor:"
	lifetime   = time.Hour
	maxBody    = 4 << 10
	maxAddQty  = 99
)

// product is a catalog entry.
type product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
}

// item is one basket line, as stored and as answered.
type item struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Qty        int    `json:"qty"`
	PriceCents int64  `json:"price_cents"`
}

type basket struct {
	Items      []item `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "listen address")
	redisURL := flag.String("redis-url", "redis://127.0.0.1:6379/0", "Redis URL")
	catalog := flag.String("catalog", "var/catalog.db", "the demo's catalog database")
	flag.Parse()
	if err := run(*addr, *redisURL, *catalog); err != nil {
		fmt.Fprintln(os.Stderr, "floorserver:", err)
		os.Exit(1)
	}
}

func run(addr, redisURL, catalogPath string) error {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	client := redis.NewClient(opts)
	defer client.Close()
	products, err := loadCatalog(catalogPath)
	if err != nil {
		return err
	}
	s := &server{redis: client, products: products}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /api/basket", s.get)
	mux.HandleFunc("POST /api/basket/items", s.add)
	mux.HandleFunc("DELETE /api/basket/items/{sku}", s.remove)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("floorserver listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loadCatalog reads every product once.
func loadCatalog(path string) (map[string]product, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT sku, name, price_cents FROM products`)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	defer rows.Close()
	out := map[string]product{}
	for rows.Next() {
		var p product
		if err := rows.Scan(&p.SKU, &p.Name, &p.PriceCents); err != nil {
			return nil, err
		}
		out[p.SKU] = p
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("catalog %s: no products", path)
	}
	return out, nil
}

type server struct {
	redis    *redis.Client
	products map[string]product
}

// load is the one GET: the basket of the request's cookie (empty without one).
func (s *server) load(r *http.Request) (key string, b basket, err error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return "", basket{Items: []item{}}, nil
	}
	key = keyPrefix + c.Value
	data, err := s.redis.Get(r.Context(), key).Bytes()
	if errors.Is(err, redis.Nil) {
		return key, basket{Items: []item{}}, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &b)
	}
	if b.Items == nil {
		b.Items = []item{}
	}
	return key, b, err
}

// save is the one SET; a basket without a key gets a new one and its cookie.
func (s *server) save(w http.ResponseWriter, r *http.Request, key string, b *basket) error {
	if key == "" {
		var id [16]byte
		_, _ = rand.Read(id[:])
		v := hex.EncodeToString(id[:])
		key = keyPrefix + v
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return s.redis.Set(r.Context(), key, data, lifetime).Err()
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	_, b, err := s.load(r)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *server) add(w http.ResponseWriter, r *http.Request) {
	var body struct {
		SKU string `json:"sku"`
		Qty *int   `json:"qty"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.SKU == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request: malformed JSON"})
		return
	}
	qty := 1
	if body.Qty != nil {
		qty = *body.Qty
	}
	if qty < 1 || qty > maxAddQty {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request: quantity must be between 1 and 99"})
		return
	}
	p, ok := s.products[body.SKU]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("unknown product: %q", body.SKU)})
		return
	}
	key, b, err := s.load(r)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	found := false
	for i := range b.Items {
		if b.Items[i].SKU == p.SKU {
			b.Items[i].Qty += qty
			found = true
			break
		}
	}
	if !found {
		b.Items = append(b.Items, item{SKU: p.SKU, Name: p.Name, Qty: qty, PriceCents: p.PriceCents})
	}
	s.change(w, r, key, &b)
}

func (s *server) remove(w http.ResponseWriter, r *http.Request) {
	key, b, err := s.load(r)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	if key == "" {
		writeJSON(w, http.StatusOK, b)
		return
	}
	sku := r.PathValue("sku")
	for i, it := range b.Items {
		if it.SKU == sku {
			b.Items = append(b.Items[:i], b.Items[i+1:]...)
			break
		}
	}
	s.change(w, r, key, &b)
}

// change totals the basket, saves it and answers it.
func (s *server) change(w http.ResponseWriter, r *http.Request, key string, b *basket) {
	b.TotalCents = 0
	for _, it := range b.Items {
		b.TotalCents += int64(it.Qty) * it.PriceCents
	}
	if err := s.save(w, r, key, b); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
