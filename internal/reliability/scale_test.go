//go:build !reliability

package reliability_test

// long is false in `go test` / `make test`: every check runs at a small count.
// The build tag reliability (`make reliability`) switches to the full counts.
const long = false

// cleanupDemo removes the demo binary built by the long checks (none here).
func cleanupDemo() {}
