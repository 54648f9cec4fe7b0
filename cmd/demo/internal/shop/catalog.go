// Package shop is the demo's domain: a product catalog kept in an embedded SQLite
// file, and the session-scoped shopping basket that refers to its products.
package shop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the embedded, cgo-free SQLite driver

	"github.com/fxsession/fxsession/inject"
)

// ErrUnknownProduct is returned when a SKU is not in the catalog.
var ErrUnknownProduct = errors.New("shop: unknown product")

// Product is a catalog entry. It is an entity: it has an identity (EntityID, its
// SKU) and a repository (the Catalog), so a basket stores it as a reference while
// it is unchanged.
type Product struct {
	SKU         string `msgpack:"sku"`
	Name        string `msgpack:"name"`
	Description string `msgpack:"description"`
	PriceCents  int64  `msgpack:"price_cents"`
}

// EntityID is the product's identity, its SKU.
func (p *Product) EntityID() string { return p.SKU }

// Clone is the copy the entity cache hands out: a Product holds only values, so
// a shallow copy is a deep one (without it the cache copies by reflection).
func (p *Product) Clone() *Product {
	c := *p
	return &c
}

// Catalog is the product repository, backed by a SQLite file. Find and
// FindMany go through an entity cache (inject.Cache): loading a basket asks
// SQLite only for products this process has not fetched in the last
// ProductTTL.
type Catalog struct {
	db       *sql.DB
	products *inject.Cache[*Product]
}

// ProductTTL is how long a product is served from a process's cache. A change
// made through this Catalog (Delete) reaches its own cache at once; one made
// elsewhere (another demo process, an SQL shell) shows within ProductTTL.
const ProductTTL = 30 * time.Second

// productCacheSize bounds the cache: far more than the seeded catalog.
const productCacheSize = 4096

// OpenCatalog opens (creating and seeding on first start) the catalog at path.
func OpenCatalog(ctx context.Context, path string) (*Catalog, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("shop: catalog folder: %w", err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, fmt.Errorf("shop: open catalog %s: %w", path, err)
	}
	c := &Catalog{db: db}
	c.products = inject.NewCache[*Product](productRows{db}, inject.CacheOptions{Size: productCacheSize, TTL: ProductTTL})
	if err := c.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("shop: catalog %s: %w", path, err)
	}
	return c, nil
}

// Close closes the catalog's database.
func (c *Catalog) Close() error { return c.db.Close() }

func (c *Catalog) init(ctx context.Context) error {
	if _, err := c.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS products (
		sku TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		description TEXT NOT NULL,
		price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
		position INTEGER NOT NULL
	)`); err != nil {
		return err
	}
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM products`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for i, p := range seed {
		if _, err := tx.ExecContext(ctx, `INSERT INTO products (sku, name, description, price_cents, position) VALUES (?, ?, ?, ?, ?)`,
			p.SKU, p.Name, p.Description, p.PriceCents, i); err != nil {
			return fmt.Errorf("seed %s: %w", p.SKU, err)
		}
	}
	return tx.Commit()
}

// All lists the products in catalog order.
func (c *Catalog) All(ctx context.Context) ([]*Product, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT sku, name, description, price_cents FROM products ORDER BY position`)
	if err != nil {
		return nil, fmt.Errorf("shop: list products: %w", err)
	}
	defer rows.Close()
	var out []*Product
	for rows.Next() {
		p := new(Product)
		if err := rows.Scan(&p.SKU, &p.Name, &p.Description, &p.PriceCents); err != nil {
			return nil, fmt.Errorf("shop: list products: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Find returns the product with the SKU, or an error matching ErrUnknownProduct.
func (c *Catalog) Find(ctx context.Context, sku string) (*Product, error) {
	p, err := c.products.Find(ctx, sku)
	if errors.Is(err, inject.ErrEntityNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProduct, sku)
	}
	return p, err
}

// Products is the catalog's entity cache. The app registers it as the
// products' repository (scope.Repository), so that loading a basket reaches
// the cache without a call through reflection; Find, FindMany and Delete use
// the same cache.
func (c *Catalog) Products() *inject.Cache[*Product] { return c.products }

// FindMany returns the products with the SKUs; unknown SKUs are simply absent
// from the map.
func (c *Catalog) FindMany(ctx context.Context, skus []string) (map[string]*Product, error) {
	return c.products.FindMany(ctx, skus)
}

// productRows is the uncached product repository: one query per call.
type productRows struct{ db *sql.DB }

func (r productRows) Find(ctx context.Context, sku string) (*Product, error) {
	p := new(Product)
	err := r.db.QueryRowContext(ctx, `SELECT sku, name, description, price_cents FROM products WHERE sku = ?`, sku).
		Scan(&p.SKU, &p.Name, &p.Description, &p.PriceCents)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", inject.ErrEntityNotFound, sku)
	}
	if err != nil {
		return nil, fmt.Errorf("shop: find %q: %w", sku, err)
	}
	return p, nil
}

func (r productRows) FindMany(ctx context.Context, skus []string) (map[string]*Product, error) {
	out := make(map[string]*Product, len(skus))
	if len(skus) == 0 {
		return out, nil
	}
	args := make([]any, len(skus))
	for i, s := range skus {
		args[i] = s
	}
	q := `SELECT sku, name, description, price_cents FROM products WHERE sku IN (?` + strings.Repeat(",?", len(skus)-1) + `)`
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("shop: find products: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		p := new(Product)
		if err := rows.Scan(&p.SKU, &p.Name, &p.Description, &p.PriceCents); err != nil {
			return nil, fmt.Errorf("shop: find products: %w", err)
		}
		out[p.SKU] = p
	}
	return out, rows.Err()
}

// Delete removes a product (the admin side of the shop; used by tests to show a
// basket whose product vanished).
func (c *Catalog) Delete(ctx context.Context, sku string) error {
	_, err := c.db.ExecContext(ctx, `DELETE FROM products WHERE sku = ?`, sku)
	c.products.Invalidate(sku)
	return err
}

// seed is the catalog written on first start.
var seed = []Product{
	{"tea-sencha", "Sencha", "Grassy Japanese green tea, 100 g.", 890},
	{"tea-assam", "Assam", "Malty black breakfast tea, 100 g.", 650},
	{"tea-earl-grey", "Earl Grey", "Black tea with bergamot, 100 g.", 720},
	{"tea-darjeeling", "Darjeeling", "First flush, light and floral, 100 g.", 1250},
	{"tea-jasmine", "Jasmine Pearls", "Hand-rolled green tea scented with jasmine, 50 g.", 1490},
	{"tea-oolong", "Tieguanyin", "Roasted Anxi oolong, 100 g.", 1380},
	{"tea-rooibos", "Rooibos", "Caffeine-free red bush from South Africa, 100 g.", 590},
	{"tea-chai", "Masala Chai", "Black tea with cardamom, ginger and clove, 100 g.", 780},
	{"tea-matcha", "Matcha", "Ceremonial grade powdered green tea, 30 g.", 2400},
	{"tea-pu-erh", "Pu-erh", "Aged dark tea from Yunnan, 100 g.", 1650},
	{"coffee-ethiopia", "Yirgacheffe", "Washed Ethiopian coffee, citrus and jasmine, 250 g.", 1190},
	{"coffee-colombia", "Huila", "Colombian coffee, caramel and red apple, 250 g.", 1050},
	{"coffee-brazil", "Cerrado", "Brazilian coffee, nutty and chocolatey, 250 g.", 890},
	{"coffee-kenya", "Nyeri AA", "Kenyan coffee, blackcurrant and grapefruit, 250 g.", 1390},
	{"coffee-decaf", "Decaf Mexico", "Sugar-cane decaffeinated Mexican coffee, 250 g.", 990},
	{"gear-kettle", "Gooseneck Kettle", "Stovetop pour-over kettle, one litre.", 3900},
	{"gear-teapot", "Kyusu Teapot", "Japanese side-handle clay teapot, 300 ml.", 4500},
	{"gear-grinder", "Hand Grinder", "Conical burr coffee grinder.", 5900},
	{"gear-filter", "Paper Filters", "100 filters for pour-over cones.", 450},
	{"gear-cups", "Tasting Cups", "Set of two porcelain cups.", 1800},
}
