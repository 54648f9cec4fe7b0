package app

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/fxsession/fxsession/cmd/demo/internal/shop"
	"github.com/fxsession/fxsession/cmd/demo/internal/web"
	"github.com/fxsession/fxsession/inject"
	"github.com/fxsession/fxsession/session"
	"github.com/fxsession/fxsession/session/sessionctl"
)

// Decoders tell "demo sessions show" the Go types of the shop's stored values:
// the signed-in user (a string) and the basket. (Flash messages sessionctl
// decodes itself.) Other values are shown as hex.
func Decoders() ([]sessionctl.Decoder, error) {
	basket, err := basketDecoder()
	if err != nil {
		return nil, err
	}
	return []sessionctl.Decoder{
		sessionctl.PutValue[string](web.UserKey),
		sessionctl.Object("scope:"+shop.BasketKey, basket),
	}, nil
}

// StoredBasket is a basket as "demo sessions show" prints it: what the session
// holds. A product unchanged since it came from the catalog is stored as a
// reference, its SKU; one stored whole also has its name and price.
type StoredBasket struct {
	Items []StoredLine `json:"items"`
}

// StoredLine is one line of a StoredBasket.
type StoredLine struct {
	SKU        string `json:"sku"`
	Name       string `json:"name,omitempty"`
	PriceCents int64  `json:"price_cents,omitempty"`
	Qty        int    `json:"qty"`
}

// basketDecoder decodes stored baskets with the plan scope uses for them,
// without a catalog: its repository knows nothing but the SKU of each reference,
// so that the admin commands need no catalog and show only what is stored.
func basketDecoder() (func(context.Context, session.Value) (any, error), error) {
	reg := inject.NewRegistry(inject.WithLogger(slog.New(slog.DiscardHandler)))
	if _, err := reg.AddRepository(referencesOnly{}); err != nil {
		return nil, fmt.Errorf("the basket's decoder: %w", err)
	}
	plan, err := reg.Plan(reflect.TypeFor[*shop.Basket](), inject.Dependencies(reflect.TypeFor[*shop.Catalog]()))
	if err != nil {
		return nil, fmt.Errorf("the basket's decoder: %w", err)
	}
	return func(ctx context.Context, data session.Value) (any, error) {
		b := shop.NewBasket(nil)
		if err := plan.Decode(ctx, data, b, inject.NewTracker()); err != nil {
			return nil, err
		}
		out := StoredBasket{Items: []StoredLine{}}
		for _, it := range b.Items {
			if it.Product == nil {
				continue
			}
			p := it.Product
			out.Items = append(out.Items, StoredLine{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Qty: it.Qty})
		}
		return out, nil
	}, nil
}

// referencesOnly resolves a product reference to a product with only its SKU.
type referencesOnly struct{}

func (referencesOnly) Find(_ context.Context, sku string) (*shop.Product, error) {
	return &shop.Product{SKU: sku}, nil
}
