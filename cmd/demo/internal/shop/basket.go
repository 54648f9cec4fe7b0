package shop

import (
	"context"
	"errors"
	"fmt"
)

// Limits of one basket. Requests beyond them are refused and change nothing.
const (
	// MaxAddQty is the largest quantity one request may add.
	MaxAddQty = 99
	// MaxLineQty is the largest quantity of one product in the basket.
	MaxLineQty = 999
	// MaxLines is the largest number of distinct products in the basket.
	MaxLines = 50
)

// Errors of basket changes; the web layer maps them to status codes.
var (
	ErrBadQuantity     = errors.New("shop: quantity must be between 1 and 99")
	ErrBadLineQuantity = errors.New("shop: a line's quantity must be between 1 and 999")
	ErrTooMany         = errors.New("shop: too many of this product in the basket")
	ErrBasketFull      = errors.New("shop: the basket is full")
	ErrNotInBasket     = errors.New("shop: the product is not in the basket")
)

// Basket is the session-scoped shopping basket of the seed document. Items is
// tagged autostart: changing it starts the visitor's session, so browsing the
// catalog never creates one. The catalog is a dependency: never stored, re-injected
// on load. The products in the items are entities, stored as references.
type Basket struct {
	Items   []LineItem `msgpack:"items" session:"autostart"`
	catalog *Catalog
}

// LineItem is one product and its quantity.
type LineItem struct {
	Product *Product `msgpack:"product"`
	Qty     int      `msgpack:"qty"`
}

// BasketKey is the name the basket is stored under (scope.Key): the one scope
// derived from the type's package path and name before the name was pinned, so
// that the baskets of existing sessions load as they are. "demo sessions show"
// finds the basket by it.
const BasketKey = "Basket.0cZqTba3jZ46"

// NewBasket is the basket's constructor, registered with scope.Provide.
func NewBasket(c *Catalog) *Basket { return &Basket{catalog: c} }

// Catalog returns the catalog the basket was given (the live singleton).
func (b *Basket) Catalog() *Catalog { return b.catalog }

// Add puts qty of the product with the SKU into the basket and returns the product.
func (b *Basket) Add(ctx context.Context, sku string, qty int) (*Product, error) {
	if qty < 1 || qty > MaxAddQty {
		return nil, ErrBadQuantity
	}
	p, err := b.catalog.Find(ctx, sku)
	if err != nil {
		return nil, err
	}
	for i := range b.Items {
		it := &b.Items[i]
		if it.Product != nil && it.Product.SKU == sku {
			if it.Qty+qty > MaxLineQty {
				return nil, fmt.Errorf("%w: at most %d", ErrTooMany, MaxLineQty)
			}
			it.Qty += qty
			return p, nil
		}
	}
	if len(b.Lines()) >= MaxLines {
		return nil, fmt.Errorf("%w: at most %d products", ErrBasketFull, MaxLines)
	}
	b.Items = append(b.Items, LineItem{Product: p, Qty: qty})
	return p, nil
}

// SetQty sets the quantity of the product with the SKU, which must be in the
// basket, and returns the product.
func (b *Basket) SetQty(sku string, qty int) (*Product, error) {
	if qty < 1 || qty > MaxLineQty {
		return nil, ErrBadLineQuantity
	}
	for i := range b.Items {
		it := &b.Items[i]
		if it.Product != nil && it.Product.SKU == sku && it.Qty > 0 {
			it.Qty = qty
			return it.Product, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNotInBasket, sku)
}

// Remove takes the product with the SKU out of the basket and reports whether it was there.
func (b *Basket) Remove(sku string) bool {
	for i, it := range b.Items {
		if it.Product != nil && it.Product.SKU == sku {
			b.Items = append(b.Items[:i], b.Items[i+1:]...)
			return true
		}
	}
	return false
}

// Lines are the items whose product still exists (a product removed from the
// catalog loads as absent and is left out).
func (b *Basket) Lines() []LineItem {
	out := make([]LineItem, 0, len(b.Items))
	for _, it := range b.Items {
		if it.Product != nil && it.Qty > 0 {
			out = append(out, it)
		}
	}
	return out
}

// Count is the number of units in the basket.
func (b *Basket) Count() int {
	n := 0
	for _, it := range b.Lines() {
		n += it.Qty
	}
	return n
}

// TotalCents is the basket's total price.
func (b *Basket) TotalCents() int64 {
	var t int64
	for _, it := range b.Lines() {
		t += int64(it.Qty) * it.Product.PriceCents
	}
	return t
}
