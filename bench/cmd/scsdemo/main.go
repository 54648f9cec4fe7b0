// Command scsdemo is the demo shop's JSON basket API written with
// alexedwards/scs and its goredisstore, the way scs is meant to be used: the
// basket is a value in the session (gob), products are copied into it whole,
// and the whole session is rewritten when it changes. `make loadtest` drives it
// and the demo (cmd/demo with -store redis) with the same requests.
//
//	scsdemo -addr 127.0.0.1:8081 -redis-url redis://127.0.0.1:6379/0 -catalog var/catalog.db [-idle-timeout 1h]
//
// It reads the catalog database the demo created (same SQLite file, same
// query per add) and serves:
//
//	GET    /healthz                   ok
//	GET    /api/basket                {"items":[{"sku","name","qty","price_cents"}],"total_cents":N}
//	POST   /api/basket/items          {"sku","qty"}: adds, answers the basket
//	DELETE /api/basket/items/{sku}    removes, answers the basket
//
// with the demo's limits and error answers (unknown sku 404, bad body 400).
package main

import (
	"context"
	"database/sql"
	"encoding/gob"
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

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // the demo's catalog driver
)

// Product is a catalog entry, copied whole into the basket.
type Product struct {
	SKU         string
	Name        string
	Description string
	PriceCents  int64
}

// LineItem is one product and its quantity.
type LineItem struct {
	Product Product
	Qty     int
}

// Basket is the session value.
type Basket struct{ Items []LineItem }

// The demo's limits (cmd/demo/internal/shop).
const (
	maxAddQty  = 99
	maxLineQty = 999
	maxLines   = 50
	maxBody    = 4 << 10
	basketKey  = "basket"
)

var (
	errUnknownProduct = errors.New("unknown product")
	errBadRequest     = errors.New("bad request")
)

func init() { gob.Register(Basket{}) }

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	redisURL := flag.String("redis-url", "redis://127.0.0.1:6379/0", "Redis URL")
	catalog := flag.String("catalog", "var/catalog.db", "the demo's catalog database")
	idle := flag.Duration("idle-timeout", 0, "scs's IdleTimeout (0: none, scs's default); the demo's sessions expire after 1h of inactivity")
	flag.Parse()
	if err := run(*addr, *redisURL, *catalog, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "scsdemo:", err)
		os.Exit(1)
	}
}

func run(addr, redisURL, catalogPath string, idle time.Duration) error {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	client := redis.NewClient(opts)
	defer client.Close()
	db, err := sql.Open("sqlite", "file:"+catalogPath+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Ping(); err != nil {
		return err
	}
	sm := scs.New()
	sm.Store = goredisstore.New(client)
	// With an IdleTimeout scs rewrites the session on every request, to move
	// its expiry; without one a session lives its Lifetime (24 h) however idle.
	sm.IdleTimeout = idle
	s := &server{sm: sm, db: db}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/basket", s.apiBasket)
	mux.HandleFunc("POST /api/basket/items", s.apiAdd)
	mux.HandleFunc("DELETE /api/basket/items/{sku}", s.apiRemove)
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	root.Handle("/", sm.LoadAndSave(mux))

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: root, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("scsdemo listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type server struct {
	sm *scs.SessionManager
	db *sql.DB
}

// find is the demo catalog's Find: one query per add.
func (s *server) find(ctx context.Context, sku string) (Product, error) {
	var p Product
	err := s.db.QueryRowContext(ctx, `SELECT sku, name, description, price_cents FROM products WHERE sku = ?`, sku).
		Scan(&p.SKU, &p.Name, &p.Description, &p.PriceCents)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("%w: %q", errUnknownProduct, sku)
	}
	return p, err
}

func (s *server) basket(ctx context.Context) Basket {
	b, _ := s.sm.Get(ctx, basketKey).(Basket)
	return b
}

type apiItem struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Qty        int    `json:"qty"`
	PriceCents int64  `json:"price_cents"`
}

type apiBasket struct {
	Items      []apiItem `json:"items"`
	TotalCents int64     `json:"total_cents"`
}

func (s *server) apiBasket(w http.ResponseWriter, r *http.Request) {
	b := s.basket(r.Context())
	out := apiBasket{Items: []apiItem{}}
	for _, it := range b.Items {
		out.Items = append(out.Items, apiItem{it.Product.SKU, it.Product.Name, it.Qty, it.Product.PriceCents})
		out.TotalCents += int64(it.Qty) * it.Product.PriceCents
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) apiAdd(w http.ResponseWriter, r *http.Request) {
	var body struct {
		SKU string `json:"sku"`
		Qty *int   `json:"qty"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.SKU == "" {
		s.apiError(w, fmt.Errorf("%w: malformed JSON", errBadRequest))
		return
	}
	qty := 1
	if body.Qty != nil {
		qty = *body.Qty
	}
	if qty < 1 || qty > maxAddQty {
		s.apiError(w, fmt.Errorf("%w: quantity must be between 1 and 99", errBadRequest))
		return
	}
	p, err := s.find(r.Context(), body.SKU)
	if err != nil {
		s.apiError(w, err)
		return
	}
	b := s.basket(r.Context())
	found := false
	for i := range b.Items {
		if it := &b.Items[i]; it.Product.SKU == p.SKU {
			if it.Qty+qty > maxLineQty {
				s.apiError(w, fmt.Errorf("%w: too many of this product", errBadRequest))
				return
			}
			it.Qty += qty
			found = true
			break
		}
	}
	if !found {
		if len(b.Items) >= maxLines {
			s.apiError(w, fmt.Errorf("%w: the basket is full", errBadRequest))
			return
		}
		b.Items = append(b.Items, LineItem{Product: p, Qty: qty})
	}
	s.sm.Put(r.Context(), basketKey, b)
	s.apiBasket(w, r)
}

func (s *server) apiRemove(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	b := s.basket(r.Context())
	for i, it := range b.Items {
		if it.Product.SKU == sku {
			b.Items = append(b.Items[:i], b.Items[i+1:]...)
			s.sm.Put(r.Context(), basketKey, b)
			break
		}
	}
	s.apiBasket(w, r)
}

func (s *server) apiError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errUnknownProduct):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case errors.Is(err, errBadRequest):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
