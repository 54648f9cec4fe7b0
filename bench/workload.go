// Package bench measures fxsession against its peers — alexedwards/scs,
// gorilla/sessions and a per-request dig child scope — on the same workload, as
// the product brief's "Targets" ask. It is its own Go module so that the peers
// never become dependencies of the library.
//
// The benchmarks live in bench_test.go (run them with `make bench` from the
// repository root, which also writes docs/performance.md through cmd/report);
// `make loadtest` (cmd/loadtest) drives the demo shop and an equivalent scs
// server (cmd/scsdemo) with wrk on one real redis-server.
//
// Every system runs the same handler logic on the same basket: ten line items of
// (sku, qty, price). An "add" request removes the oldest line and appends a new
// one ([Basket.Rotate]), so the basket keeps its size; a "read" request sums it
// ([Basket.Total]) and changes nothing.
package bench

import (
	"net/http"
	"strconv"
)

// Item is one line of the benchmark basket.
type Item struct {
	SKU   string `msgpack:"sku"`
	Qty   int    `msgpack:"qty"`
	Price int64  `msgpack:"price"`
}

// Pricing is a singleton the basket depends on: for fxsession it is a
// constructor parameter (stripped before save, re-injected on load), for the
// dig scope a parent-scope value.
type Pricing struct {
	// Currency is only there so that the type is not empty.
	Currency string
}

// NewPricing returns the pricing singleton.
func NewPricing() *Pricing { return &Pricing{Currency: "EUR"} }

// Basket is the benchmark basket. Items is what is stored; pricing is a
// dependency and never stored (gob and msgpack both skip unexported fields).
type Basket struct {
	Items   []Item `msgpack:"items" session:"autostart"`
	pricing *Pricing
}

// NewBasket is the basket's constructor (scope.Provide, dig Provide).
func NewBasket(p *Pricing) *Basket { return &Basket{pricing: p} }

// Pricing returns the pricing the basket was constructed with.
func (b *Basket) Pricing() *Pricing { return b.pricing }

// skuCount is the number of distinct SKUs the workload cycles through.
const skuCount = 4096

// skus are the precomputed SKUs, so that no system pays for formatting them. It
// is a constant lookup table, never written after initialisation.
var skus = func() (s [skuCount]string) {
	for i := range s {
		s[i] = "sku-" + strconv.Itoa(100000+i)
	}
	return s
}()

// ItemN is the n-th item of the workload's sequence.
func ItemN(n int) Item {
	return Item{SKU: skus[n%skuCount], Qty: 1 + n%7, Price: int64(100 + n%1000)}
}

// Fill returns n items, the initial basket of a benchmark.
func Fill(n int) []Item {
	out := make([]Item, n)
	for i := range out {
		out[i] = ItemN(i)
	}
	return out
}

// Rotate is the "add" request's change: it drops the oldest line and appends
// item n, so the basket keeps its size.
func (b *Basket) Rotate(n int) {
	if len(b.Items) > 0 {
		copy(b.Items, b.Items[1:])
		b.Items = b.Items[:len(b.Items)-1]
	}
	b.Items = append(b.Items, ItemN(n))
}

// Total is the "read" request's work: the basket's value in cents.
func (b *Basket) Total() int64 {
	var t int64
	for _, it := range b.Items {
		t += int64(it.Qty) * it.Price
	}
	return t
}

// OK is the body every benchmark handler writes.
var OK = []byte("ok")

// Writer is a ResponseWriter that costs (almost) nothing, so that the benchmarks
// measure the session layers and not a recorder. Reset it between requests.
type Writer struct {
	H    http.Header
	Code int
	N    int
}

// NewWriter returns a Writer with an empty header.
func NewWriter() *Writer { return &Writer{H: http.Header{}} }

// Header returns the response header.
func (w *Writer) Header() http.Header { return w.H }

// Write counts the bytes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.Code == 0 {
		w.Code = http.StatusOK
	}
	w.N += len(p)
	return len(p), nil
}

// WriteHeader records the status.
func (w *Writer) WriteHeader(code int) {
	if w.Code == 0 {
		w.Code = code
	}
}

// Reset empties the writer for the next request, keeping the header map's
// storage.
func (w *Writer) Reset() {
	clear(w.H)
	w.Code, w.N = 0, 0
}

// SetCookie returns the "name=value" of the first Set-Cookie header called
// name, or "".
func (w *Writer) SetCookie(name string) string {
	for _, c := range (&http.Response{Header: w.H}).Cookies() {
		if c.Name == name {
			return c.Name + "=" + c.Value
		}
	}
	return ""
}

// Rates is request-scoped: one per request (scope.ProvideRequest, a dig child
// scope's Provide).
type Rates struct {
	// VAT is only there so that the type is not empty.
	VAT int
}

// NewRates returns the request's rates.
func NewRates() *Rates { return &Rates{VAT: 19} }

// Quote is request-scoped with two dependencies: the Pricing singleton and the
// request's Rates.
type Quote struct {
	pricing *Pricing
	rates   *Rates
}

// NewQuote is the quote's constructor.
func NewQuote(p *Pricing, r *Rates) *Quote { return &Quote{pricing: p, rates: r} }

// Ready reports whether the quote got both its dependencies.
func (q *Quote) Ready() bool { return q.pricing != nil && q.rates != nil }
