package bench_test

import (
	"fmt"

	"github.com/fxsession/fxsession/bench"
)

// The "add" request of every benchmark: the oldest line goes, a new one comes,
// the basket keeps its size.
func ExampleBasket_Rotate() {
	b := bench.NewBasket(bench.NewPricing())
	b.Items = bench.Fill(3)
	b.Rotate(3)
	fmt.Println(len(b.Items), b.Items[0].SKU, b.Items[2].SKU, b.Total())
	// Output: 3 sku-100001 sku-100003 920
}
